"""帮办代办 rules: matching, decline/timeout/transfer, proxy authorisation, audited reveal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.audit import AuditLog
from models.cases import Case, CaseEvent, CaseStatus, HelperAssignment, ProxyScope
from models.users import Role
from services import clock, helpers
from services.auth import Principal
from services.cases import Action, request_supplement, transition
from services.errors import AppError, ErrorCode
from tests.unit.test_cases import Clock, World, fixed_clock, open_item, user_with, world

__all__ = ["fixed_clock", "world"]

H = "H-XF-000"


async def profile(p: Principal, *, hall: str = H, departments: list[str] | None = None,
                  themes: list[str] | None = None, on_duty: bool = True) -> None:
    await helpers.ensure_profile(user_id=p.user_id, hall_code=hall,
                                 departments=departments or ["市民政局"], themes=themes or [])
    if not on_duty:
        await helpers.set_on_duty(actor=p, on_duty=False)


async def ask(w: World, code: str = "MZ-004") -> tuple[Case, HelperAssignment | None]:
    case = await open_item(w, code)
    got = await helpers.request_help(actor=w.zhang, case_id=case.id, note="腿脚不便")
    return case, got.assignment


async def test_matches_hall_scope_duty_and_fewest_open_cases(world: World) -> None:
    await profile(world.helper)
    await profile(world.helper2)
    off = await user_with("off", Role.helper)
    await profile(off, on_duty=False)
    elsewhere = await user_with("far", Role.helper)
    await profile(elsewhere, hall="H-QC-000")
    wrong_dept = await user_with("gongan", Role.helper)
    await profile(wrong_dept, departments=["市公安局"])

    _, first = await ask(world)
    _, second = await ask(world)
    _, third = await ask(world)
    assert first and second and third
    # Ties go to the older profile; then load evens out.
    assert [first.helper_id, second.helper_id, third.helper_id] == [
        world.helper.user_id, world.helper2.user_id, world.helper.user_id
    ]
    # Matching by theme too: 残疾人证 (市残联) for a helper who covers 残疾人服务.
    themed = await user_with("theme", Role.helper)
    await profile(themed, departments=["无"], themes=["残疾人服务"])
    _, by_theme = await ask(world, "CL-001")
    assert by_theme is not None and by_theme.helper_id == themed.user_id


async def test_asking_twice_keeps_one_assignment(world: World) -> None:
    await profile(world.helper)
    await profile(world.helper2)
    case, first = await ask(world)
    again = await helpers.request_help(actor=world.zhang, case_id=case.id)
    assert again.assignment is not None and first is not None
    assert again.assignment.id == first.id
    assert await HelperAssignment.filter(case_id=case.id).count() == 1


async def test_decline_moves_to_the_next_helper_then_waits(world: World) -> None:
    await profile(world.helper)
    await profile(world.helper2)
    case, a = await ask(world)
    assert a is not None
    await helpers.decline(actor=world.helper, assignment_id=a.id, reason="今天外出")
    nxt = await HelperAssignment.get(active_case_id=case.id)
    assert nxt.helper_id == world.helper2.user_id
    with pytest.raises(AppError) as err:  # not yours
        await helpers.accept(actor=world.helper, assignment_id=nxt.id)
    assert err.value.code is ErrorCode.not_found
    await helpers.decline(actor=world.helper2, assignment_id=nxt.id, reason="不熟悉")
    # Nobody left who hasn't declined: the case waits for the sweep, still asking for help.
    assert not await HelperAssignment.filter(active_case_id=case.id).exists()
    assert (await Case.get(id=case.id)).help_requested_at is not None
    late = await user_with("late", Role.helper)
    await profile(late)
    await helpers.expire_offers()
    assert (await HelperAssignment.get(active_case_id=case.id)).helper_id == late.user_id


async def test_unanswered_offer_times_out_and_moves_on(world: World, fixed_clock: Clock) -> None:
    await profile(world.helper)
    await profile(world.helper2)
    case, a = await ask(world)
    assert a is not None
    fixed_clock.at += timedelta(minutes=29)
    assert await helpers.expire_offers() == 0
    fixed_clock.at += timedelta(minutes=2)
    assert await helpers.expire_offers() == 1
    assert (await HelperAssignment.get(id=a.id)).status == "expired"
    nxt = await HelperAssignment.get(active_case_id=case.id)
    assert nxt.helper_id == world.helper2.user_id
    with pytest.raises(AppError) as err:  # too late to accept the expired offer
        await helpers.accept(actor=world.helper, assignment_id=a.id)
    assert err.value.code is ErrorCode.assignment_state
    actions = {e.action for e in await CaseEvent.filter(case_id=case.id)}
    assert "helper_expired" in actions


async def test_transfer_with_a_note(world: World) -> None:
    await profile(world.helper)
    await profile(world.helper2)
    _, a = await ask(world)
    assert a is not None
    await helpers.accept(actor=world.helper, assignment_id=a.id)
    with pytest.raises(AppError):  # to someone at another hall
        far = await user_with("far", Role.helper)
        await profile(far, hall="H-QC-000")
        await helpers.transfer(actor=world.helper, assignment_id=a.id, note="换人",
                               to_helper_user_id=far.user_id)
    moved = await helpers.transfer(actor=world.helper, assignment_id=a.id,
                                   note="需要懂养老政策的",
                                   to_helper_user_id=world.helper2.user_id)
    nxt = moved.next
    assert nxt is not None and nxt.helper_id == world.helper2.user_id
    assert nxt.helper.nickname is not None  # loaded for the answer
    old = await HelperAssignment.get(id=a.id)
    assert moved.transferred.id == a.id and moved.transferred.status == old.status
    assert old.status == "transferred" and old.note == "需要懂养老政策的"
    assert old.active_case_id is None


async def test_proxy_needs_the_residents_authorisation(world: World) -> None:
    await profile(world.helper)
    case, a = await ask(world)
    assert a is not None
    await helpers.accept(actor=world.helper, assignment_id=a.id)
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("居民身份证", "复印件不清晰")])
    with pytest.raises(AppError) as err:
        await transition(actor=world.helper, case_id=case.id, action=Action.resubmit)
    assert err.value.code is ErrorCode.proxy_authorization_required
    # Authorised for withdrawing only: still not for resubmitting.
    await helpers.grant_proxy(actor=world.zhang, helper_user_id=world.helper.user_id,
                              scopes=[ProxyScope.withdraw], days=7, case_id=case.id)
    with pytest.raises(AppError) as err:
        await transition(actor=world.helper, case_id=case.id, action=Action.resubmit)
    assert err.value.code is ErrorCode.proxy_authorization_required
    grant = await helpers.grant_proxy(actor=world.zhang, helper_user_id=world.helper.user_id,
                                      scopes=[ProxyScope.supplement], days=7)
    await transition(actor=world.helper, case_id=case.id, action=Action.resubmit, note="已补")
    last = await CaseEvent.filter(case_id=case.id).order_by("-id").first()
    assert last is not None and last.actor_kind == "helper"
    # Revoked or expired authorisations count for nothing.
    await helpers.revoke_proxy(actor=world.zhang, authorization_id=grant.id)
    await request_supplement(actor=world.staff, case_id=case.id,
                             items=[("居民身份证", "仍不清晰")],
                             new_requirement_reason="补正后的复印件依旧无法辨认号码")
    with pytest.raises(AppError) as err:
        await transition(actor=world.helper, case_id=case.id, action=Action.resubmit)
    assert err.value.code is ErrorCode.proxy_authorization_required
    with pytest.raises(AppError) as err:  # li can't revoke zhang's grant
        await helpers.revoke_proxy(actor=world.li, authorization_id=grant.id)
    assert err.value.code is ErrorCode.not_found


async def test_filing_for_a_resident_needs_apply_scope(world: World) -> None:
    worker = await user_with("worker", Role.community_worker)
    with pytest.raises(AppError) as err:
        await open_item_for(world, worker)
    assert err.value.code is ErrorCode.proxy_authorization_required
    await helpers.grant_proxy(actor=world.zhang, helper_user_id=worker.user_id,
                              scopes=[ProxyScope.apply], days=3)
    case = await open_item_for(world, worker)
    assert case.applicant_id == world.zhang.user_id
    assert case.submitted_by_id == worker.user_id
    assert case.person_id is not None
    # Expired a day later than granted.
    clock_now = clock.now()
    from models.cases import ProxyAuthorization

    await ProxyAuthorization.all().update(expires_at=clock_now - timedelta(seconds=1))
    with pytest.raises(AppError) as err:
        await open_item_for(world, worker)
    assert err.value.code is ErrorCode.proxy_authorization_required


async def open_item_for(w: World, actor: Principal) -> Case:
    from services.cases import open_case

    return await open_case(actor=actor, hall_code=H, item_code="MZ-004",
                           applicant_user_id=w.zhang.user_id)


async def test_helper_sees_only_their_cases_and_reveal_is_audited(world: World) -> None:
    await profile(world.helper)
    mine, a = await ask(world)
    other = await open_item(world)
    assert a is not None
    from services.cases import get_case

    with pytest.raises(AppError) as err:
        await get_case(actor=world.helper, case_id=other.id)
    assert err.value.code is ErrorCode.not_found
    with pytest.raises(AppError) as err:
        await get_case(actor=world.helper2, case_id=mine.id)
    assert err.value.code is ErrorCode.not_found
    view = await get_case(actor=world.helper, case_id=mine.id)
    assert view.case.person.name_masked.startswith("*")

    with pytest.raises(AppError) as err:  # offered, not accepted yet
        await helpers.reveal_applicant(actor=world.helper, case_id=mine.id, reason="核对身份信息")
    assert err.value.code is ErrorCode.not_found
    await helpers.accept(actor=world.helper, assignment_id=a.id)
    with pytest.raises(AppError) as err:  # no view_personal authorisation
        await helpers.reveal_applicant(actor=world.helper, case_id=mine.id, reason="核对身份信息")
    assert err.value.code is ErrorCode.proxy_authorization_required
    assert await AuditLog.all().count() == 0
    await helpers.grant_proxy(actor=world.zhang, helper_user_id=world.helper.user_id,
                              scopes=[ProxyScope.view_personal], days=1, case_id=mine.id)
    shown = await helpers.reveal_applicant(actor=world.helper, case_id=mine.id,
                                           reason="核对身份信息")
    assert shown.id_number == "621002194103050316" and shown.name == "张建国"
    log = await AuditLog.get()
    assert log.actor_id == world.helper.user_id and log.action == "case.applicant.reveal"
    assert "id_number" in log.fields_read


async def test_worklist_sorted_by_due_time(world: World, fixed_clock: Clock) -> None:
    await profile(world.helper, departments=["市民政局", "市残联"])
    slow, _ = await ask(world, "MZ-004")  # 10 days
    fast, _ = await ask(world, "MZ-005")  # 1 day
    waiting, _ = await ask(world, "CL-001")  # not accepted: no due time yet
    for c in (slow, fast):
        await transition(actor=world.staff, case_id=c.id, action=Action.accept)
    rows = await helpers.worklist(actor=world.helper)
    assert [r.case.id for r in rows] == [fast.id, slow.id, waiting.id]


async def test_case_end_releases_the_helper(world: World) -> None:
    await profile(world.helper)
    case, a = await ask(world)
    assert a is not None
    await helpers.accept(actor=world.helper, assignment_id=a.id)
    await transition(actor=world.zhang, case_id=case.id, action=Action.withdraw)
    done = await HelperAssignment.get(id=a.id)
    assert done.status == "done" and done.active_case_id is None
    assert (await Case.get(id=case.id)).status is CaseStatus.withdrawn
    assert await helpers.worklist(actor=world.helper) == []
    with pytest.raises(AppError):
        await helpers.request_help(actor=world.zhang, case_id=case.id)


async def test_both_sweeps_are_registered_and_run(world: World, fixed_clock: Clock) -> None:
    from services import jobs

    await profile(world.helper)
    await profile(world.helper2)
    case, a = await ask(world, "MZ-005")
    assert a is not None
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    fixed_clock.at += timedelta(days=3)
    ran = await jobs.run_periodic_once(force=True)
    assert {"cases.due_alerts", "helpers.offer_timeouts"} <= set(ran)
    assert (await HelperAssignment.get(id=a.id)).status == "expired"
    from models.cases import CaseAlert

    assert await CaseAlert.filter(case_id=case.id, level="overdue").exists()
