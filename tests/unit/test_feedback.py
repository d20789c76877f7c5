"""投诉建议 / 办不成事 rules, straight through the service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from models.cases import Case, CaseStatus
from models.catalogue import Hall, ServiceItem
from models.feedback import (
    CloseReason,
    Feedback,
    FeedbackEvent,
    FeedbackKind,
    FeedbackStatus,
    Moderation,
)
from models.notifications import Notification
from models.users import Role, User
from services import clock, outbox
from services import feedback as fb_service
from services.auth import Principal
from services.errors import AppError
from services.workcalendar import add_working_days

pytestmark = pytest.mark.usefixtures("fake_wechat")

# A Monday morning with no holiday near it: working-day sums are easy to check by hand.
MONDAY = datetime(2026, 11, 16, 9, 30, tzinfo=clock.SHANGHAI)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    state = {"now": MONDAY}
    monkeypatch.setattr(clock, "now", lambda: state["now"])
    return state


async def resident(code: str = "res-a") -> Principal:
    user = await User.create(openid=f"openid-{code}")
    return Principal(user.id, frozenset({"resident"}))


async def staff(code: str = "staff-a") -> Principal:
    user = await User.create(openid=f"openid-{code}")
    await user.roles.create(role=Role.staff)
    return Principal(user.id, frozenset({"resident", "staff"}))


async def catalogue() -> None:
    await Hall.create(code="H-T-1", name="测试大厅", level="county", county="西峰区", lat=35.7,
                      lng=107.6, hours={"always": True})
    await ServiceItem.create(code="IT-1", name="测试事项", department="市人社局", kind="公共服务",
                             subject="person", theme="社保", window_kind="comprehensive")


async def submit(actor: Principal, text: str = "窗口排队太久，没有叫号", **kw: Any) -> Feedback:
    kw.setdefault("kind", FeedbackKind.complaint)
    return await fb_service.submit(actor=actor, text=text, photos=kw.pop("photos", []), **kw)


async def test_due_time_counts_working_days_per_kind(frozen: dict[str, datetime]) -> None:
    me = await resident()
    complaint = await submit(me)
    unresolved = await submit(me, kind=FeedbackKind.unresolved)
    suggestion = await submit(me, text="建议增加周末服务时间", kind=FeedbackKind.suggestion)
    # Monday + 5 working days = end of next Monday; + 3 = Thursday; + 10 = Monday after next.
    assert clock.local(complaint.due_at) == add_working_days(MONDAY, 5)
    assert clock.local(complaint.due_at).date().isoformat() == "2026-11-23"
    assert clock.local(unresolved.due_at).date().isoformat() == "2026-11-19"
    assert clock.local(suggestion.due_at).date().isoformat() == "2026-11-30"


async def test_due_days_are_configurable(frozen: dict[str, datetime],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from services.settings import get_settings

    monkeypatch.setitem(get_settings().feedback_due_days, "complaint", 1)
    fb = await submit(await resident())
    assert clock.local(fb.due_at).date().isoformat() == "2026-11-17"


async def test_department_comes_from_item_then_hall_then_default() -> None:
    await catalogue()
    me = await resident()
    by_item = await submit(me, item_code="IT-1", hall_code="H-T-1")
    by_hall = await submit(me, hall_code="H-T-1")
    plain = await submit(me)
    assert by_item.department == "市人社局"
    assert by_hall.department == "测试大厅"
    assert plain.department == "市政务服务中心"
    assert by_hall.hall_id == (await Hall.get(code="H-T-1")).id


async def test_unknown_hall_or_item_is_a_field_error() -> None:
    me = await resident()
    with pytest.raises(AppError) as err:
        await submit(me, hall_code="NOPE")
    assert err.value.status == 422 and "hall_code" in err.value.fields
    with pytest.raises(AppError) as err:
        await submit(me, item_code="NOPE")
    assert "item_code" in err.value.fields
    assert await Feedback.all().count() == 0


async def test_a_case_report_must_be_about_ones_own_case() -> None:
    owner, other = await resident("owner"), await resident("other")
    case = await Case.create(applicant_id=owner.user_id, submitted_by_id=owner.user_id,
                             department="市公安局", hall_code="H-T-1", status=CaseStatus.accepted)
    mine = await submit(owner, case_id=case.id)
    assert mine.case_id == case.id and mine.department == "市公安局"
    with pytest.raises(AppError) as err:
        await submit(other, case_id=case.id)
    assert err.value.status == 404
    with pytest.raises(AppError) as err:
        await submit(owner, case_id=case.id + 999)
    assert err.value.status == 404


async def test_risky_text_is_refused_and_nothing_is_stored(fake_wechat: Any) -> None:
    me = await resident()
    with pytest.raises(AppError) as err:
        await submit(me, text="这里有人组织赌博活动")
    assert err.value.code.name == "content_rejected" and err.value.status == 422
    assert await Feedback.all().count() == 0
    assert await FeedbackEvent.all().count() == 0
    assert fake_wechat.sec_checks[-1]["suggest"] == "risky"


async def test_review_text_is_stored_hidden_until_staff_approve() -> None:
    me, clerk = await resident(), await staff()
    fb = await submit(me, text="希望加快审核进度", kind=FeedbackKind.suggestion)
    assert fb.moderation is Moderation.review and fb.is_public is False
    assert await fb_service.list_public(kind=None, cursor=None, limit=10) == []
    approved = await fb_service.moderate(actor=clerk, feedback_id=fb.id, approve=True)
    assert approved.moderation is Moderation.approved and approved.is_public
    assert [f.id for f in await fb_service.list_public(kind=None, cursor=None, limit=10)] == [fb.id]
    with pytest.raises(AppError) as err:  # already decided
        await fb_service.moderate(actor=clerk, feedback_id=fb.id, approve=False)
    assert err.value.status == 409


async def test_clean_text_is_public_at_once() -> None:
    fb = await submit(await resident(), text="建议大厅增加母婴室", kind=FeedbackKind.suggestion)
    assert fb.moderation is Moderation.passed and fb.is_public


async def test_reply_notifies_once_and_satisfied_answer_closes() -> None:
    me, clerk = await resident(), await staff()
    fb = await submit(me)
    replied = await fb_service.reply(actor=clerk, feedback_id=fb.id, text="已增派窗口人员")
    assert replied.status is FeedbackStatus.replied
    assert replied.handler_id == clerk.user_id
    await outbox.dispatch_due()  # the promised messages go out after commit
    notes = await Notification.filter(user_id=me.user_id, template="feedback_reply")
    assert [n.dedup_key for n in notes] == [f"feedback_reply:{fb.id}:0"]
    # A second reply to an already-replied report is a state conflict, not a second message.
    with pytest.raises(AppError) as err:
        await fb_service.reply(actor=clerk, feedback_id=fb.id, text="再次答复")
    assert err.value.status == 409
    closed = await fb_service.answer(actor=me, feedback_id=fb.id, satisfied=True, note="满意")
    assert closed.status is FeedbackStatus.closed
    assert closed.close_reason is CloseReason.satisfied and closed.closed_at is not None
    with pytest.raises(AppError) as err:
        await fb_service.reopen(actor=me, feedback_id=fb.id, reason="又不满意了")
    assert err.value.code.name == "feedback_state"


async def test_answer_before_reply_is_a_conflict() -> None:
    me = await resident()
    fb = await submit(me)
    with pytest.raises(AppError) as err:
        await fb_service.answer(actor=me, feedback_id=fb.id, satisfied=True)
    assert err.value.status == 409


async def test_reopen_once_then_409(frozen: dict[str, datetime]) -> None:
    me, clerk = await resident(), await staff()
    fb = await submit(me)
    await fb_service.reply(actor=clerk, feedback_id=fb.id, text="已处理")
    frozen["now"] = MONDAY + timedelta(days=2)
    again = await fb_service.reopen(actor=me, feedback_id=fb.id, reason="问题没有解决")
    assert again.status is FeedbackStatus.reopened and again.reopen_count == 1
    # A fresh limit from the reopen day (Wednesday + 5 working days).
    assert clock.local(again.due_at).date().isoformat() == "2026-11-25"
    with pytest.raises(AppError) as err:  # even before the second reply
        await fb_service.reopen(actor=me, feedback_id=fb.id, reason="再次重新办理")
    assert err.value.code.name == "feedback_reopen_used" and err.value.status == 409
    await fb_service.reply(actor=clerk, feedback_id=fb.id, text="第二次答复")
    with pytest.raises(AppError) as err:
        await fb_service.reopen(actor=me, feedback_id=fb.id, reason="还是不满意")
    assert err.value.code.name == "feedback_reopen_used"
    # The second reply is a second message, the first is not repeated.
    await outbox.dispatch_due()  # the promised messages go out after commit
    keys = sorted(str(k) for k in await Notification.filter(user_id=me.user_id).values_list(
        "dedup_key", flat=True))
    assert keys == [f"feedback_reply:{fb.id}:0", f"feedback_reply:{fb.id}:1"]
    actions = [str(a) for a in await FeedbackEvent.filter(feedback_id=fb.id).order_by(
        "id").values_list("action", flat=True)]
    assert actions == ["submitted", "replied", "reopened", "replied"]


async def test_unsatisfied_close_can_still_be_reopened_once() -> None:
    me, clerk = await resident(), await staff()
    fb = await submit(me)
    await fb_service.reply(actor=clerk, feedback_id=fb.id, text="已处理")
    closed = await fb_service.answer(actor=me, feedback_id=fb.id, satisfied=False)
    assert closed.close_reason is CloseReason.unsatisfied
    reopened = await fb_service.reopen(actor=me, feedback_id=fb.id, reason="没有解决")
    assert reopened.status is FeedbackStatus.reopened and reopened.closed_at is None


async def test_someone_elses_report_is_not_found() -> None:
    owner, other, clerk = await resident("owner"), await resident("other"), await staff()
    fb = await submit(owner)
    await fb_service.reply(actor=clerk, feedback_id=fb.id, text="已处理")
    for call in (fb_service.get_own(actor=other, feedback_id=fb.id),
                 fb_service.get_for(actor=other, feedback_id=fb.id),
                 fb_service.answer(actor=other, feedback_id=fb.id, satisfied=True),
                 fb_service.reopen(actor=other, feedback_id=fb.id, reason="不是我的")):
        with pytest.raises(AppError) as err:
            await call
        assert err.value.status == 404
    # Staff holding the resident role too can't answer on the resident's behalf.
    with pytest.raises(AppError) as err:
        await fb_service.answer(actor=clerk, feedback_id=fb.id, satisfied=True)
    assert err.value.status == 404
    assert (await Feedback.get(id=fb.id)).status is FeedbackStatus.replied


async def test_staff_only_operations_refuse_residents() -> None:
    me = await resident()
    fb = await submit(me)
    for call in (fb_service.reply(actor=me, feedback_id=fb.id, text="自己答复"),
                 fb_service.assign(actor=me, feedback_id=fb.id, handler_id=None,
                                   department="某部门"),
                 fb_service.moderate(actor=me, feedback_id=fb.id, approve=True),
                 fb_service.list_for_staff(actor=me)):
        with pytest.raises(AppError) as err:
            await call
        assert err.value.status == 403


async def test_assign_needs_a_staff_handler() -> None:
    me, clerk = await resident(), await staff()
    fb = await submit(me)
    with pytest.raises(AppError) as err:
        await fb_service.assign(actor=clerk, feedback_id=fb.id, handler_id=me.user_id,
                                department=None)
    assert err.value.status == 422
    done = await fb_service.assign(actor=clerk, feedback_id=fb.id, handler_id=clerk.user_id,
                                   department="市医保局")
    assert done.handler_id == clerk.user_id and done.department == "市医保局"


async def test_sweep_closes_unanswered_replies_after_n_days(
    frozen: dict[str, datetime],
) -> None:
    me, clerk = await resident(), await staff()
    old, fresh, waiting = await submit(me), await submit(me), await submit(me)
    await fb_service.reply(actor=clerk, feedback_id=old.id, text="已处理")
    frozen["now"] = MONDAY + timedelta(days=5)
    await fb_service.reply(actor=clerk, feedback_id=fresh.id, text="已处理")
    frozen["now"] = MONDAY + timedelta(days=7, minutes=1)
    assert await fb_service.autoclose_replied() == 1
    assert await fb_service.autoclose_replied() == 0  # idempotent
    old_row = await Feedback.get(id=old.id)
    assert old_row.status is FeedbackStatus.closed
    assert old_row.close_reason is CloseReason.timeout and old_row.satisfied is None
    assert (await Feedback.get(id=fresh.id)).status is FeedbackStatus.replied
    assert (await Feedback.get(id=waiting.id)).status is FeedbackStatus.submitted


async def test_overdue_listing(frozen: dict[str, datetime]) -> None:
    me, clerk = await resident(), await staff()
    late = await submit(me, kind=FeedbackKind.unresolved)
    frozen["now"] = MONDAY + timedelta(days=10)
    await submit(me)
    assert fb_service.is_overdue(await Feedback.get(id=late.id))
    rows = await fb_service.list_for_staff(actor=clerk, overdue=True)
    assert [r.id for r in rows] == [late.id]
