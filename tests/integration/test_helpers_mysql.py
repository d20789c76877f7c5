"""帮办 assignment and case moves under real concurrency on MySQL: many connections at once
must never give one case to two helpers, nor move one case twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError

from models.cases import Case, CaseEvent, CaseStatus, HelperAssignment
from models.users import Role
from services import clock, helpers
from services.auth import Principal
from services.cases import Action, open_case, transition
from services.errors import AppError, ErrorCode
from tests.unit.test_cases import World, user_with, world

__all__ = ["world"]

pytestmark = pytest.mark.mysql


class Meter:
    """How many calls were inside the wrapped coroutine at once: proof the test overlapped."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await fn(*args, **kwargs)
            finally:
                self.now -= 1

        return wrapped


async def _helpers(n: int) -> list[int]:
    ids = []
    for i in range(n):
        p = await user_with(f"mh{i}", Role.helper)
        await helpers.ensure_profile(user_id=p.user_id, hall_code="H-XF-000",
                                     departments=["市民政局"], themes=[])
        ids.append(p.user_id)
    return ids


async def _waiting_cases(w: World, n: int) -> list[Case]:
    cases = []
    for _ in range(n):
        c = await open_case(actor=w.zhang, hall_code="H-XF-000", item_code="MZ-004")
        await Case.filter(id=c.id).update(help_requested_at=clock.now())
        cases.append(c)
    return cases


async def test_many_concurrent_assigns_never_double_assign(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _helpers(4)
    cases = await _waiting_cases(world, 10)
    meter = Meter()
    monkeypatch.setattr(helpers, "_offer", meter.wrap(helpers._offer))

    calls = [helpers.assign(case_id=c.id) for c in cases for _ in range(20)]
    results = await asyncio.gather(*calls)

    print(f"assign: {len(calls)} calls, peak {meter.peak} in flight at once")
    assert meter.peak > 5, f"calls did not overlap (peak {meter.peak})"
    for c in cases:
        rows = await HelperAssignment.filter(case_id=c.id)
        assert len(rows) == 1, f"case {c.id} got {len(rows)} assignments"
        assert rows[0].active_case_id == c.id
        # Every caller was told the same helper.
        told = {r.id for r in results if r is not None and r.case_id == c.id}
        assert told == {rows[0].id}


async def test_the_unique_active_slot_holds_even_without_the_row_lock(world: World) -> None:
    [h] = await _helpers(1)
    [case] = await _waiting_cases(world, 1)

    async def raw_insert() -> bool:
        try:
            await HelperAssignment.create(case_id=case.id, helper_id=h, active_case_id=case.id,
                                          offered_at=clock.now())
            return True
        except IntegrityError:
            return False

    outcomes = await asyncio.gather(*(raw_insert() for _ in range(30)))
    assert outcomes.count(True) == 1
    assert await HelperAssignment.filter(active_case_id=case.id).count() == 1


async def test_decline_racing_the_timeout_sweep_moves_the_offer_once(world: World) -> None:
    await _helpers(3)
    cases = await _waiting_cases(world, 8)
    offers = [a for c in cases if (a := await helpers.assign(case_id=c.id)) is not None]
    assert len(offers) == len(cases)
    # Every first offer is long overdue; their successors will be fresh and stay put.
    await HelperAssignment.filter(id__in=[a.id for a in offers]).update(
        offered_at=clock.now() - timedelta(hours=2)
    )

    async def decline(a: HelperAssignment) -> int:
        p = Principal(user_id=a.helper_id, roles=frozenset({"helper"}))
        try:
            await helpers.decline(actor=p, assignment_id=a.id, reason="忙")
            return 1
        except AppError as exc:
            assert exc.code is ErrorCode.assignment_state
            return 0

    moved = await asyncio.gather(
        *(decline(a) for a in offers), *(helpers.expire_offers() for _ in range(4))
    )
    # Each stale offer left the "offered" state exactly once, by one path or the other.
    assert sum(moved) == len(offers)
    for c, a in zip(cases, offers, strict=True):
        first = await HelperAssignment.get(id=a.id)
        assert first.status in ("declined", "expired") and first.active_case_id is None
        live = await HelperAssignment.filter(active_case_id=c.id)
        assert len(live) == 1 and live[0].helper_id != a.helper_id


async def test_concurrent_staff_moves_apply_once(world: World) -> None:
    case = await open_case(actor=world.zhang, hall_code="H-XF-000", item_code="MZ-004")

    async def accept() -> str:
        try:
            await transition(actor=world.staff, case_id=case.id, action=Action.accept)
            return "ok"
        except AppError as exc:
            return exc.code.name

    outcomes = await asyncio.gather(*(accept() for _ in range(25)))
    assert outcomes.count("ok") == 1
    assert set(outcomes) == {"ok", "illegal_transition"}
    after = await Case.get(id=case.id)
    assert after.status is CaseStatus.accepted and after.version == 1
    assert await CaseEvent.filter(case_id=case.id, action="accept").count() == 1
