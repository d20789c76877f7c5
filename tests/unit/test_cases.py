"""办件 rules: the state machine table, working-day due times with 补正 pauses, 一次性告知,
reopening, overdue alerts, subscribe messages."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest

from models.cases import Case, CaseAlert, CaseEvent, CaseStatus, SupplementRequest
from models.notifications import Notification
from models.users import IdentityLevel, Person, Role, User, UserRole
from services import cases as case_service
from services import clock, outbox, people, seed
from services.auth import Principal
from services.cases import (
    TRANSITIONS,
    Action,
    raise_due_alerts,
    reopen,
    repeat_supplements,
    request_supplement,
    rule_for,
    transition,
)
from services.errors import AppError, ErrorCode
from services.window import acceptance, refusal
from services.window import content as window_content

TZ = clock.SHANGHAI
ZHANG_ID = "621002194103050316"
LI_ID = "621021197508120426"


@dataclass
class World:
    staff: Principal
    zhang: Principal
    li: Principal
    helper: Principal
    helper2: Principal


async def user_with(openid: str, *roles: Role, id_number: str | None = None) -> Principal:
    user = await User.create(openid=openid, nickname=openid)
    for r in roles:
        await UserRole.create(user=user, role=r)
    if id_number:
        # Bound as if face-verified; the verification flow itself: tests/api/test_identity_api.py
        user.person = await Person.get(id_number_hash=people.id_lookup_hash(id_number))
        user.identity_level = IdentityLevel.face
        await user.save(update_fields=["person_id", "identity_level"])
    return Principal(user_id=user.id, roles=frozenset({"resident", *map(str, roles)}))


async def make_world() -> World:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    await window_content.seed_window_rules(data)  # refusal grounds, 容缺 marks
    return World(
        staff=await user_with("staff", Role.staff),
        zhang=await user_with("zhang", id_number=ZHANG_ID),
        li=await user_with("li", id_number=LI_ID),
        helper=await user_with("helper", Role.helper),
        helper2=await user_with("helper2", Role.helper),
    )


@pytest.fixture
async def world() -> World:
    return await make_world()


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = datetime(2026, 9, 28, 10, 0, tzinfo=TZ)
        monkeypatch.setattr(clock, "now", lambda: self.at)

    def set(self, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> None:
        self.at = datetime(year, month, day, hour, minute, tzinfo=TZ)


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def open_item(w: World, code: str = "MZ-004", *, hall: str = "H-XF-000") -> Case:
    return await case_service.open_case(actor=w.zhang, hall_code=hall, item_code=code)


async def force_status(case: Case, status: CaseStatus) -> None:
    await Case.filter(id=case.id).update(status=status, closed_at=clock.now())


# ------------------------------------------------------------------ state machine table

ALL_PAIRS = list(itertools.product(CaseStatus, Action))
ILLEGAL = [p for p in ALL_PAIRS if p not in TRANSITIONS]


def test_table_shape() -> None:
    # Every state but the two ends can be left; the ends are reachable.
    sources = {s for s, _ in TRANSITIONS}
    targets = {r.to for r in TRANSITIONS.values()}
    assert set(CaseStatus) - sources == {CaseStatus.withdrawn, CaseStatus.not_accepted}
    # submitted is reached again when materials asked for before acceptance are handed in.
    assert set(CaseStatus) - targets == set()
    assert TRANSITIONS[(CaseStatus.materials_pending, Action.resubmit)].to is \
        CaseStatus.submitted
    assert TRANSITIONS[(CaseStatus.supplement_requested, Action.resubmit)].to is \
        CaseStatus.resubmitted
    assert len(ILLEGAL) == len(ALL_PAIRS) - len(TRANSITIONS) > 80


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS)
def test_rule_lookup_for_every_pair(status: CaseStatus, action: Action) -> None:
    if (status, action) in TRANSITIONS:
        assert rule_for(status, action) is TRANSITIONS[(status, action)]
    else:
        with pytest.raises(AppError) as err:
            rule_for(status, action)
        assert err.value.code is ErrorCode.illegal_transition and err.value.status == 409


async def _attempt(w: World, case: Case, action: Action) -> None:
    # The actor is both staff and the applicant, so only the table can say no.
    both = Principal(user_id=w.zhang.user_id, roles=frozenset({"resident", "staff"}))
    if action is Action.accept:
        # The window's accept: the one that may accept a case whose materials are pending.
        await acceptance.accept(actor=both, case_id=case.id)
    elif action is Action.refuse:
        await refusal.refuse(actor=both, case_id=case.id, ground="申请人未满80周岁")
    elif action is Action.request_supplement:
        await request_supplement(actor=both, case_id=case.id,
                                 items=[("居民身份证", "复印件不清晰")])
    elif action is Action.reopen:
        await reopen(actor=both, case_id=case.id, reason="结果有误，申请重新办理")
    elif action is Action.return_to_window:
        await transition(actor=both, case_id=case.id, action=action, note="材料需要窗口核实")
    else:
        await transition(actor=both, case_id=case.id, action=action)


@pytest.mark.parametrize(("status", "action"), ILLEGAL)
async def test_every_illegal_transition_is_refused_and_changes_nothing(
    world: World, status: CaseStatus, action: Action
) -> None:
    case = await open_item(world)
    await force_status(case, status)
    events_before = await CaseEvent.filter(case_id=case.id).count()
    with pytest.raises(AppError) as err:
        await _attempt(world, case, action)
    assert err.value.code is ErrorCode.illegal_transition
    after = await Case.get(id=case.id)
    assert after.status is status and after.version == 0
    assert await CaseEvent.filter(case_id=case.id).count() == events_before


@pytest.mark.parametrize(("status", "action"), sorted(TRANSITIONS, key=str))
async def test_every_legal_transition_moves_to_the_table_state(
    world: World, status: CaseStatus, action: Action
) -> None:
    case = await open_item(world)
    await Case.filter(id=case.id).update(status=status, accepted_at=clock.now(),
                                         closed_at=clock.now())
    if status is CaseStatus.supplement_requested:
        await SupplementRequest.create(case_id=case.id, sequence=1, requested_at=clock.now(),
                                       items={"items": []})
    await _attempt(world, case, action)
    after = await Case.get(id=case.id)
    assert after.status is TRANSITIONS[(status, action)].to and after.version == 1
    last = await CaseEvent.filter(case_id=case.id).order_by("-id").first()
    assert last is not None and last.action == action and last.from_status == status


async def test_who_may_move_a_case(world: World) -> None:
    case = await open_item(world)
    with pytest.raises(AppError) as err:  # the applicant can't accept their own case
        await transition(actor=world.zhang, case_id=case.id, action=Action.accept)
    assert err.value.code is ErrorCode.forbidden
    with pytest.raises(AppError) as err:  # someone else's case does not exist for li
        await transition(actor=world.li, case_id=case.id, action=Action.withdraw)
    assert err.value.code is ErrorCode.not_found
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("居民身份证", "已过有效期")])
    with pytest.raises(AppError) as err:  # staff don't resubmit for the applicant
        await transition(actor=world.staff, case_id=case.id, action=Action.resubmit)
    assert err.value.code is ErrorCode.forbidden
    with pytest.raises(AppError) as err:  # an unassigned helper is nobody to this case
        await transition(actor=world.helper, case_id=case.id, action=Action.resubmit)
    assert err.value.code is ErrorCode.not_found
    await transition(actor=world.zhang, case_id=case.id, action=Action.resubmit)


async def test_stale_version_is_refused(world: World) -> None:
    case = await open_item(world)
    await transition(actor=world.staff, case_id=case.id, action=Action.accept,
                     expected_version=0)
    with pytest.raises(AppError) as err:
        await transition(actor=world.staff, case_id=case.id, action=Action.start_review,
                         expected_version=0)
    assert err.value.code is ErrorCode.case_changed


# ------------------------------------------------------------------ due times


async def test_due_time_counts_working_days_across_national_day_with_a_paused_supplement(
    world: World, fixed_clock: Clock
) -> None:
    # 高龄津贴: 10 working days. Accepted Mon 28 Sep 2026; 国庆 1–7 Oct; Sat 10 Oct is a
    # 调休 workday.
    case = await open_item(world, "MZ-004")
    assert case.promised_days == 10
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    case = await Case.get(id=case.id)
    # 29, 30 Sep, 8, 9, 10(Sat), 12, 13, 14, 15, 16 Oct.
    assert clock.local(case.due_at).date() == date(2026, 10, 16)

    fixed_clock.set(2026, 9, 30, 15, 0)
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("居民身份证", "复印件不清晰")])
    case = await Case.get(id=case.id)
    assert case.status is CaseStatus.supplement_requested and case.due_at is None

    fixed_clock.set(2026, 10, 9, 9, 0)
    await transition(actor=world.zhang, case_id=case.id, action=Action.resubmit)
    case = await Case.get(id=case.id)
    # The pause touched 30 Sep, 8 and 9 Oct, so those don't count: 29 Sep, 10(Sat), 12–16,
    # 19, 20, 21 Oct.
    due = clock.local(case.due_at)
    assert due.date() == date(2026, 10, 21)
    assert (due.hour, due.minute) == (23, 59)


async def test_bundle_promise_is_the_slowest_item_and_materials_are_merged(
    world: World,
) -> None:
    # 残疾人服务一件事: CL-001 (15 days) + CL-002 (15 days); 退休一件事 mixes 10 and 1.
    case = await case_service.open_case(actor=world.zhang, hall_code="H-XF-000",
                                        bundle_code="YJS-11")
    assert case.promised_days == 10
    names = await case_service.materials_of(case)
    assert names.count("居民身份证") == 1
    assert {"职工养老保险待遇申领表", "购房合同或租房备案证明"} <= set(names)


async def test_open_case_validations(world: World) -> None:
    with pytest.raises(AppError) as err:  # both or neither
        await case_service.open_case(actor=world.zhang, hall_code="H-XF-000")
    assert err.value.code is ErrorCode.validation_failed
    with pytest.raises(AppError) as err:  # GJ-001 is only at the 公积金 hall
        await case_service.open_case(actor=world.zhang, hall_code="H-XF-000",
                                     item_code="GJ-001")
    assert "hall_code" in err.value.fields
    with pytest.raises(AppError) as err:  # no real name bound
        await case_service.open_case(actor=world.staff, hall_code="H-XF-000",
                                     item_code="MZ-004")
    assert err.value.code is ErrorCode.identity_required
    with pytest.raises(AppError) as err:  # filing for li without li's authorisation
        await case_service.open_case(actor=world.helper, hall_code="H-XF-000",
                                     item_code="MZ-004", applicant_user_id=world.li.user_id)
    assert err.value.code is ErrorCode.proxy_authorization_required


# ------------------------------------------------------------------ 一次性告知


async def test_one_notice_rule(world: World) -> None:
    case = await open_item(world, "MZ-003")  # 低保: 身份证, 家庭收入情况声明, 户口簿
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    with pytest.raises(AppError) as err:  # only materials from the guide, each with a reason
        await request_supplement(actor=world.staff, case_id=case.id,
                                 items=[("结婚证", "缺少"), ("户口簿", "")])
    assert set(err.value.fields) == {"items.0.material", "items.1.reason"}
    with pytest.raises(AppError) as err:
        await request_supplement(actor=world.staff, case_id=case.id,
                                 items=[("户口簿", "缺页"), ("户口簿", "缺页")])
    assert "items.1.material" in err.value.fields
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("户口簿", "缺少户主页"), ("家庭收入情况声明", "未签字")])
    view = await case_service.get_case(actor=world.zhang, case_id=case.id)
    assert [m["material"] for m in view.missing] == ["户口簿", "家庭收入情况声明"]
    await transition(actor=world.zhang, case_id=case.id, action=Action.resubmit)
    await transition(actor=world.staff, case_id=case.id, action=Action.start_review)

    with pytest.raises(AppError) as err:  # a second notice needs a reason
        await request_supplement(actor=world.staff, case_id=case.id,
                                 items=[("居民身份证", "已过期")])
    assert "new_requirement_reason" in err.value.fields
    assert (await Case.get(id=case.id)).status is CaseStatus.under_review
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("居民身份证", "已过期")],
                             new_requirement_reason="审查中发现身份证于上周到期，属新情况")
    rows, _ = await repeat_supplements(actor=world.staff, cursor=None, limit=10)
    assert [(r.case.id, r.sequence) for r in rows] == [(case.id, 2)]
    with pytest.raises(AppError):
        await repeat_supplements(actor=world.zhang, cursor=None, limit=10)


# ------------------------------------------------------------------ reopen, alerts, messages


async def _to_closed(w: World, case: Case) -> None:
    for action in (Action.accept, Action.start_review, Action.approve, Action.deliver,
                   Action.close):
        await transition(actor=w.staff, case_id=case.id, action=action)


async def test_reopen_within_the_window_only(world: World, fixed_clock: Clock) -> None:
    case = await open_item(world)
    await _to_closed(world, case)
    fixed_clock.set(2026, 10, 12, 10, 0)  # 14 days later
    with pytest.raises(AppError) as err:
        await reopen(actor=world.zhang, case_id=case.id, reason="短")
    assert err.value.code is ErrorCode.validation_failed
    await reopen(actor=world.zhang, case_id=case.id, reason="津贴金额与标准不符")
    again = await Case.get(id=case.id)
    assert again.status is CaseStatus.under_review and again.reopen_count == 1
    assert again.due_at is not None and again.closed_at is None

    other = await open_item(world)
    fixed_clock.set(2026, 10, 12, 10, 0)
    await _to_closed(world, other)
    fixed_clock.set(2026, 10, 27, 10, 1)  # 15 days and a minute
    with pytest.raises(AppError) as err:
        await reopen(actor=world.zhang, case_id=other.id, reason="津贴金额与标准不符")
    assert err.value.code is ErrorCode.reopen_window_closed


async def test_alerts_once_per_case_per_level(world: World, fixed_clock: Clock) -> None:
    case = await open_item(world, "MZ-005")  # 1 working day
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    quiet = await open_item(world, "MZ-004")  # 10 days
    await transition(actor=world.staff, case_id=quiet.id, action=Action.accept)
    # Due end of Tue 29 Sep; a day before it is "due soon".
    assert await raise_due_alerts(now=datetime(2026, 9, 29, 9, 0, tzinfo=TZ)) == 1
    assert await raise_due_alerts(now=datetime(2026, 9, 29, 10, 0, tzinfo=TZ)) == 0
    assert await raise_due_alerts(now=datetime(2026, 9, 30, 9, 0, tzinfo=TZ)) == 1
    assert await raise_due_alerts(now=datetime(2026, 10, 1, 9, 0, tzinfo=TZ)) == 0
    levels = await CaseAlert.filter(case_id=case.id).values_list("level", flat=True)
    assert sorted(str(x) for x in levels) == ["due_soon", "overdue"]
    assert not await CaseAlert.filter(case_id=quiet.id).exists()
    # A paused case is not overdue: the applicant has the ball.
    await request_supplement(actor=world.staff, case_id=quiet.id,
                             items=[("居民身份证", "不清晰")])
    assert await raise_due_alerts(now=datetime(2026, 12, 1, 9, 0, tzinfo=TZ)) == 0


async def test_each_status_change_messages_the_applicant_once(world: World) -> None:
    case = await open_item(world)
    await _to_closed(world, case)
    await outbox.dispatch_due()  # the promised messages go out after commit
    notes = await Notification.filter(user_id=world.zhang.user_id,
                                      template__in=["case_status", "case_result"])
    # submit + 5 moves, one message each, keyed by the timeline event (the approval as
    # case_result, which falls back to SMS).
    assert len(notes) == 6
    events = await CaseEvent.filter(case_id=case.id).values_list("id", flat=True)
    assert {n.dedup_key for n in notes} == {f"case:{case.id}:event:{e}" for e in events}


async def test_timeline_records_who_when_note(world: World, fixed_clock: Clock) -> None:
    case = await open_item(world)
    fixed_clock.set(2026, 9, 28, 11, 30)
    await transition(actor=world.staff, case_id=case.id, action=Action.accept, note="材料齐全")
    view = await case_service.get_case(actor=world.zhang, case_id=case.id)
    last = view.events[-1]
    assert (last.action, last.actor_kind, last.note) == ("accept", "staff", "材料齐全")
    assert last.actor_id == world.staff.user_id
    assert [str(a) for a in view.actions] == ["withdraw"]
    assert clock.local(view.case.accepted_at) == datetime(2026, 9, 28, 11, 30, tzinfo=TZ)
    assert view.reopen_until is None
    assert timedelta(0) < view.case.due_at - view.case.accepted_at  # type: ignore[operator]
