"""好差评 rules and the rectification of bad ratings, straight through the service."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest

from models.appointments import Appointment, AppointmentStatus, Slot
from models.cases import Case, CaseStatus
from models.catalogue import Hall, ServiceItem
from models.notifications import Notification
from models.org import Position
from models.ratings import (
    Rating,
    RatingStaff,
    RectificationStatus,
    RectificationTask,
    TargetType,
    VisitResult,
)
from models.users import Role, User
from services import appointments, clock, outbox, people
from services import ratings as service
from services.auth import Principal
from services.errors import AppError
from services.workcalendar import add_working_days

pytestmark = pytest.mark.usefixtures("fake_wechat")

MONDAY = datetime(2026, 11, 16, 9, 30, tzinfo=clock.SHANGHAI)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    state = {"now": MONDAY}
    monkeypatch.setattr(clock, "now", lambda: state["now"])
    return state


async def resident(code: str = "rater") -> Principal:
    user = await User.create(openid=f"openid-{code}")
    return Principal(user.id, frozenset({"resident"}))


async def staff(code: str = "clerk") -> Principal:
    user = await User.create(openid=f"openid-{code}")
    await user.roles.create(role=Role.staff)
    return Principal(user.id, frozenset({"resident", "staff"}))


async def make_case(owner: Principal, status: CaseStatus = CaseStatus.approved,
                    department: str = "市公安局", hall_code: str = "H-T-1") -> Case:
    return await Case.create(applicant_id=owner.user_id, submitted_by_id=owner.user_id,
                             department=department, hall_code=hall_code, status=status)


async def make_hall() -> Hall:
    return await Hall.get_or_none(code="H-T-1") or await Hall.create(
        code="H-T-1", name="测试大厅", level="county", county="西峰区", lat=35.7, lng=107.6,
        hours={"always": True})


async def make_appointment(owner: Principal, status: AppointmentStatus,
                           **extra: Any) -> Appointment:
    hall = await make_hall()
    if not await ServiceItem.exists(code="IT-1"):
        await ServiceItem.create(code="IT-1", name="测试事项", department="市人社局",
                                 kind="公共服务", subject="person", theme="社保",
                                 window_kind="comprehensive")
    person = await people.upsert_person(name="王小明", id_number="621002200302170132")
    starts = MONDAY + timedelta(hours=1)
    slot = await Slot.create(hall=hall, window_kind="comprehensive", starts_at=starts,
                             ends_at=starts + timedelta(minutes=30), general_capacity=5)
    return await Appointment.create(
        resident_id=owner.user_id, person=person, booked_by_id=owner.user_id, slot=slot,
        hall=hall, window_kind="comprehensive", item_code="IT-1", status=status,
        pool="general", starts_at=starts, ends_at=starts + timedelta(minutes=30),
        check_in_token=secrets.token_hex(8), **extra)


async def rate_case(actor: Principal, case: Case, level: int = 5, text: str = "") -> Rating:
    return await service.rate(actor=actor, target_type=TargetType.case, target_id=case.id,
                              level=level, tags=["态度好"], text=text)


async def test_levels_are_stored_as_five_to_one_with_chinese_labels() -> None:
    me = await resident()
    expected = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
    for level, label in expected.items():
        rating = await rate_case(me, await make_case(me), level=level)
        assert (rating.level, rating.label) == (level, label)


async def test_one_rating_per_case() -> None:
    me = await resident()
    case = await make_case(me)
    await rate_case(me, case)
    with pytest.raises(AppError) as err:
        await rate_case(me, case, level=1)
    assert err.value.code.name == "already_rated" and err.value.status == 409
    assert await Rating.filter(target_id=case.id).count() == 1
    assert await RectificationTask.all().count() == 0


@pytest.mark.parametrize("status", ["approved", "rejected", "result_delivered", "closed"])
async def test_finished_cases_can_be_rated(status: str) -> None:
    me = await resident()
    rating = await rate_case(me, await make_case(me, CaseStatus(status)))
    assert rating.department == "市公安局" and rating.hall_code == "H-T-1"


@pytest.mark.parametrize("status", ["submitted", "accepted", "under_review",
                                    "supplement_requested", "resubmitted", "withdrawn"])
async def test_unfinished_cases_cannot_be_rated(status: str) -> None:
    me = await resident()
    with pytest.raises(AppError) as err:
        await rate_case(me, await make_case(me, CaseStatus(status)))
    assert err.value.code.name == "rating_not_open"
    assert await Rating.all().count() == 0


async def test_only_the_applicant_may_rate() -> None:
    owner, other = await resident("owner"), await resident("other")
    case = await make_case(owner)
    with pytest.raises(AppError) as err:
        await rate_case(other, case)
    assert err.value.status == 404
    with pytest.raises(AppError) as err:
        await service.rate(actor=owner, target_type=TargetType.case, target_id=case.id + 99,
                           level=5, tags=[])
    assert err.value.status == 404


async def test_appointment_rated_once_after_check_in() -> None:
    me, other = await resident(), await resident("other")
    booked = await make_appointment(me, AppointmentStatus.booked)
    with pytest.raises(AppError) as err:
        await service.rate(actor=me, target_type=TargetType.appointment, target_id=booked.id,
                           level=4, tags=[])
    assert err.value.code.name == "rating_not_open"
    booked.status = AppointmentStatus.checked_in
    await booked.save()
    with pytest.raises(AppError) as err:
        await service.rate(actor=other, target_type=TargetType.appointment,
                           target_id=booked.id, level=4, tags=[])
    assert err.value.status == 404
    rating = await service.rate(actor=me, target_type=TargetType.appointment,
                                target_id=booked.id, level=4, tags=[])
    assert rating.department == "市人社局" and rating.hall_code == "H-T-1"
    with pytest.raises(AppError) as err:
        await service.rate(actor=me, target_type=TargetType.appointment,
                           target_id=booked.id, level=4, tags=[])
    assert err.value.code.name == "already_rated"


async def test_a_case_and_an_appointment_with_the_same_id_are_different_targets() -> None:
    me = await resident()
    case = await make_case(me)
    await make_appointment(me, AppointmentStatus.checked_in, id=case.id)
    await rate_case(me, case)
    await service.rate(actor=me, target_type=TargetType.appointment, target_id=case.id,
                       level=5, tags=[])
    assert await Rating.all().count() == 2


async def test_risky_rating_text_is_refused_and_review_text_hidden() -> None:
    me = await resident()
    case = await make_case(me)
    with pytest.raises(AppError) as err:
        await rate_case(me, case, level=1, text="赌博")
    assert err.value.code.name == "content_rejected"
    assert await Rating.all().count() == 0 and await RectificationTask.all().count() == 0
    rating = await rate_case(me, case, level=3, text="审核太慢")
    assert rating.text_visible is False


@pytest.mark.parametrize("level", [1, 2])
async def test_bad_rating_opens_a_rectification_task(frozen: dict[str, datetime],
                                                     level: int) -> None:
    me = await resident()
    rating = await rate_case(me, await make_case(me, department="市医保局"), level=level)
    task = await RectificationTask.get(rating_id=rating.id)
    assert task.department == "市医保局" and task.status is RectificationStatus.open
    assert clock.local(task.due_at) == add_working_days(MONDAY, 15)
    assert clock.local(task.due_at).date().isoformat() == "2026-12-07"


@pytest.mark.parametrize("level", [3, 4, 5])
async def test_good_ratings_open_no_task(level: int) -> None:
    me = await resident()
    await rate_case(me, await make_case(me), level=level)
    assert await RectificationTask.all().count() == 0


async def test_reply_then_follow_up_closes_the_task() -> None:
    me, clerk = await resident(), await staff()
    rating = await rate_case(me, await make_case(me), level=1)
    task = await RectificationTask.get(rating_id=rating.id)
    with pytest.raises(AppError) as err:  # no visit before the rectification reply
        await service.follow_up(actor=clerk, task_id=task.id, result=VisitResult.satisfied,
                                note="回访")
    assert err.value.code.name == "rectification_state"
    replied = await service.reply_task(actor=clerk, task_id=task.id, text="已对窗口人员培训")
    assert replied.status is RectificationStatus.replied
    await outbox.dispatch_due()  # the promised messages go out after commit
    assert await Notification.filter(user_id=me.user_id,
                                      dedup_key=f"rectification_reply:{task.id}").count() == 1
    with pytest.raises(AppError):
        await service.reply_task(actor=clerk, task_id=task.id, text="重复答复")
    closed = await service.follow_up(actor=clerk, task_id=task.id,
                                     result=VisitResult.satisfied, note="电话回访，居民认可")
    assert closed.status is RectificationStatus.closed
    assert closed.visit_result is VisitResult.satisfied and closed.visited_at is not None


async def test_residents_cannot_work_tasks() -> None:
    me = await resident()
    rating = await rate_case(me, await make_case(me), level=2)
    task = await RectificationTask.get(rating_id=rating.id)
    for call in (service.list_tasks(actor=me), service.get_task(actor=me, task_id=task.id),
                 service.reply_task(actor=me, task_id=task.id, text="自己整改")):
        with pytest.raises(AppError) as err:
            await call
        assert err.value.status == 403


async def test_overdue_tasks_escalate_by_level(frozen: dict[str, datetime]) -> None:
    me, clerk = await resident(), await staff()
    late = await RectificationTask.get(
        rating_id=(await rate_case(me, await make_case(me), level=1)).id)
    answered = await RectificationTask.get(
        rating_id=(await rate_case(me, await make_case(me), level=2)).id)
    await service.reply_task(actor=clerk, task_id=answered.id, text="已整改")
    due = clock.local(late.due_at)

    frozen["now"] = due - timedelta(minutes=1)
    assert await service.escalate_overdue() == 0

    frozen["now"] = due + timedelta(minutes=1)
    assert await service.escalate_overdue() == 1
    assert await service.escalate_overdue() == 0  # idempotent
    row = await RectificationTask.get(id=late.id)
    assert row.escalated and row.escalation_level == 1 and row.escalated_at is not None
    # Answered in time: never escalated, however late the sweep runs.
    assert (await RectificationTask.get(id=answered.id)).escalated is False

    frozen["now"] = add_working_days(due, 5) + timedelta(minutes=1)
    assert await service.escalate_overdue() == 1
    assert (await RectificationTask.get(id=late.id)).escalation_level == 2

    frozen["now"] = add_working_days(due, 60)
    await service.escalate_overdue()
    assert (await RectificationTask.get(id=late.id)).escalation_level == 3  # capped
    escalated = await service.list_tasks(actor=clerk, escalated=True)
    assert [t.id for t in escalated] == [late.id]


def test_escalation_level_boundaries() -> None:
    due = add_working_days(MONDAY, 15)
    assert service.escalation_level(due, due) == 0
    assert service.escalation_level(due, due + timedelta(microseconds=1)) == 1
    assert service.escalation_level(due, add_working_days(due, 5)) == 1
    assert service.escalation_level(due, add_working_days(due, 5) + timedelta(seconds=1)) == 2
    assert service.escalation_level(due, add_working_days(due, 11)) == 3


# --- an appointment's rating reaches the clerk who served the visit ---------------------------


async def hall_clerk(code: str, hall_code: str = "H-T-1") -> Principal:
    """A clerk at a hall (a membership, so check-in by code is in their scope)."""
    from services import org

    await make_hall()
    user = await User.create(openid=f"openid-{code}")
    await org.add_membership(actor=None, user_id=user.id, position=Position.clerk,
                             hall_code=hall_code)
    return Principal(user.id, frozenset({"resident", "staff"}))


async def rate_appointment(actor: Principal, appt: Appointment, level: int = 2) -> Rating:
    return await service.rate(actor=actor, target_type=TargetType.appointment,
                              target_id=appt.id, level=level, tags=[])


async def served_rows(rating: Rating) -> set[tuple[int, str, str, str]]:
    return {(r.user_id, r.served_as.value, r.department, r.hall_code)
            for r in await RatingStaff.filter(rating_id=rating.id)}


async def test_a_rated_appointment_reaches_the_clerk_who_checked_it_in(
        frozen: dict[str, datetime]) -> None:
    me, clerk = await resident(), await hall_clerk("window-1")
    await hall_clerk("window-2")  # a colleague at the same hall who did not serve
    appt = await make_appointment(me, AppointmentStatus.booked)
    frozen["now"] = appt.starts_at
    checked = await appointments.check_in_by_code(actor=clerk, code=appt.check_in_token)
    assert checked.status is AppointmentStatus.checked_in
    assert checked.served_by_id == clerk.user_id
    rating = await rate_appointment(me, appt, level=1)
    # As a clerk of the rated department and hall, the way a case's clerk rows are filled.
    assert await served_rows(rating) == {(clerk.user_id, "clerk", "市人社局", "H-T-1")}
    # The bad rating still opens its rectification task for the hall.
    assert await RectificationTask.exists(rating_id=rating.id)


async def test_an_appointment_nobody_served_creates_no_staff_rows(
        frozen: dict[str, datetime]) -> None:
    me = await resident()
    appt = await make_appointment(me, AppointmentStatus.booked)
    frozen["now"] = appt.starts_at
    # The resident's own check-in at the hall's QR: no clerk has acted on it.
    hall_token = appointments.hall_check_in_token("H-T-1", clock.today())
    checked = await appointments.check_in_at_hall(actor=me, appointment_id=appt.id,
                                                  hall_code="H-T-1", token=hall_token)
    assert checked.status is AppointmentStatus.checked_in
    assert checked.served_by_id is None
    rating = await rate_appointment(me, appt)
    assert await served_rows(rating) == set()
    assert await RatingStaff.all().count() == 0


async def test_a_clerk_acting_on_a_self_check_in_is_reached_by_an_earlier_rating(
        frozen: dict[str, datetime]) -> None:
    me = await resident()
    first, second = await hall_clerk("window-1"), await hall_clerk("window-2")
    appt = await make_appointment(me, AppointmentStatus.booked)
    frozen["now"] = appt.starts_at
    await appointments.check_in_at_hall(
        actor=me, appointment_id=appt.id, hall_code="H-T-1",
        token=appointments.hall_check_in_token("H-T-1", clock.today()))
    rating = await rate_appointment(me, appt, level=1)  # rated while waiting
    assert await served_rows(rating) == set()
    # The first clerk to scan the visit served it; a second scan by another clerk changes
    # nothing (one server, one row).
    await appointments.check_in_by_code(actor=first, code=appt.check_in_token)
    await appointments.check_in_by_code(actor=second, code=appt.check_in_token)
    assert (await Appointment.get(id=appt.id)).served_by_id == first.user_id
    assert await served_rows(rating) == {(first.user_id, "clerk", "市人社局", "H-T-1")}


async def test_staff_of_another_hall_cannot_check_in_or_be_recorded(
        frozen: dict[str, datetime]) -> None:
    me = await resident()
    # A clerk of another hall (a staff account without any membership would see all, in tests).
    await Hall.create(code="H-T-2", name="另一大厅", level="county", county="庆城县", lat=36.0,
                      lng=107.9, hours={"always": True})
    outsider = await hall_clerk("outsider", hall_code="H-T-2")
    appt = await make_appointment(me, AppointmentStatus.booked)
    frozen["now"] = appt.starts_at
    with pytest.raises(AppError) as err:
        await appointments.check_in_by_code(actor=outsider, code=appt.check_in_token)
    assert err.value.status == 404
    row = await Appointment.get(id=appt.id)
    assert row.status is AppointmentStatus.booked
    assert row.served_by_id is None
