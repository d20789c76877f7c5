"""首问负责 under real concurrency on MySQL: however many staff act first at once, a case has
one owner; racing hand-overs leave one owner and an unbroken history."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tortoise.exceptions import IntegrityError

from models.cases import CaseEvent
from models.users import Role
from models.window import CaseOwner
from services import clock
from services.cases import Action, open_case, transition
from services.errors import AppError, ErrorCode
from services.window import ownership
from tests.integration.test_helpers_mysql import Meter
from tests.unit.test_cases import World, user_with, world

__all__ = ["world"]

pytestmark = pytest.mark.mysql


async def test_many_first_actions_record_one_owner(world: World) -> None:
    case = await open_case(actor=world.zhang, hall_code="H-XF-000", item_code="MZ-004")
    staff = [await user_with(f"ws{i}", Role.staff) for i in range(12)]
    meter = Meter()
    act = meter.wrap(transition)
    results = await asyncio.gather(
        *(act(actor=s, case_id=case.id, action=Action.accept) for s in staff),
        return_exceptions=True)
    won = [s for s, r in zip(staff, results, strict=True) if not isinstance(r, BaseException)]
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, AppError) and r.code in (ErrorCode.illegal_transition,
                                                         ErrorCode.case_changed), r
    assert meter.peak > 1 and len(won) == 1
    owners = await CaseOwner.filter(case_id=case.id)
    assert [(o.staff_id, o.active_case_id) for o in owners] == [
        (won[0].user_id, case.id)]
    assert await CaseEvent.filter(case_id=case.id, action="accept").count() == 1


async def test_the_database_refuses_a_second_current_owner(world: World) -> None:
    # Even a path that skipped the case lock could not record two owners: the unique index.
    case = await open_case(actor=world.zhang, hall_code="H-XF-000", item_code="MZ-004")
    staff = [await user_with(f"wr{i}", Role.staff) for i in range(20)]
    results = await asyncio.gather(
        *(CaseOwner.create(case_id=case.id, staff_id=s.user_id, active_case_id=case.id,
                           since=clock.now()) for s in staff),
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, IntegrityError) for r in results if isinstance(r, BaseException))
    assert await CaseOwner.filter(active_case_id=case.id).count() == 1


async def test_racing_hand_overs_leave_one_owner_and_a_whole_history(world: World) -> None:
    case = await open_case(actor=world.zhang, hall_code="H-XF-000", item_code="MZ-004")
    await transition(actor=world.staff, case_id=case.id, action=Action.accept)
    targets = [await user_with(f"wt{i}", Role.staff) for i in range(8)]
    meter = Meter()
    hand = meter.wrap(ownership.hand_over)
    results = await asyncio.gather(
        *(hand(actor=world.staff, case_id=case.id, to_user_id=t.user_id, note="换班移交")
          for t in targets),
        return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    # This staff account's scope manages the hall (tests' unassigned scope), so every
    # hand-over is permitted: the row lock serialises them into one chain.
    assert meter.peak > 1 and len(ok) == len(targets)
    rows = await CaseOwner.filter(case_id=case.id).order_by("id")
    assert len(rows) == 1 + len(targets)
    current = [r for r in rows if r.active_case_id is not None]
    assert len(current) == 1 and current[0].id == rows[-1].id and current[0].until is None
    for earlier, later in itertools.pairwise(rows):
        # Each owner's time ends exactly when the next one's starts: no gap, no overlap.
        assert earlier.active_case_id is None and earlier.until == later.since
        assert later.handed_over_by_id == world.staff.user_id
