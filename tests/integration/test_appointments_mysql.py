"""Appointments under real concurrency on MySQL: many connections at once must never overbook a
slot, half-move a reschedule, or give a cancelled place to two people."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from functools import partial
from typing import Any

import pytest
from tortoise import connections

from models.appointments import Appointment, AppointmentStatus, Slot, WaitlistEntry, WaitlistStatus
from services import appointments, waitlist
from services.auth import Principal
from services.errors import AppError
from tests.unit.test_appointments_common import ITEM, Clock, at, catalogue, clk, make_slot, resident

__all__ = ["clk"]

pytestmark = pytest.mark.mysql

MON = date(2026, 9, 21)
POOL = 60


@pytest.fixture
async def wide_pool() -> AsyncIterator[None]:
    """Tortoise's MySQL client reads ``maxsize`` (default 5) from the URL when the pool is first
    opened; reopen it wider so 200 tasks really run on many connections at once."""
    conn: Any = connections.get("default")
    await conn.close()
    conn.pool_maxsize = POOL
    try:
        yield
    finally:
        await conn.close()
        conn.pool_maxsize = 5


class Meter:
    """Peak number of calls in flight at once: proof the test overlapped."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def run(self, fn: Callable[[], Awaitable[Any]]) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await fn()
            return "ok"
        except AppError as exc:
            return exc.code.name
        finally:
            self.now -= 1


async def _residents(n: int) -> list[Principal]:
    return [await resident() for _ in range(n)]


async def _assert_counters_match(slot: Slot) -> int:
    await slot.refresh_from_db()
    rows = await Appointment.filter(slot_id=slot.id).exclude(
        status=AppointmentStatus.cancelled).count()
    assert slot.booked == rows <= slot.capacity
    return rows


async def test_200_concurrent_bookings_for_5_places(clk: Clock, wide_pool: None) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=5)
    people = await _residents(200)
    meter = Meter()
    outcomes = Counter(await asyncio.gather(*[
        meter.run(partial(appointments.book, actor=p, slot_id=slot.id, item_code=ITEM))
        for p in people]))
    assert outcomes == {"ok": 5, "slot_full": 195}
    assert await _assert_counters_match(slot) == 5
    assert meter.peak > 50
    assert connections.get("default")._pool.size > 5


async def test_same_person_racing_for_one_slot_books_once(clk: Clock, wide_pool: None) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=50)
    me = await resident()
    meter = Meter()
    outcomes = Counter(await asyncio.gather(*[
        meter.run(partial(appointments.book, actor=me, slot_id=slot.id, item_code=ITEM))
        for _ in range(30)]))
    assert outcomes == {"ok": 1, "already_booked": 29}
    assert await _assert_counters_match(slot) == 1


async def test_same_person_racing_for_many_slots_respects_the_limit(
        clk: Clock, wide_pool: None) -> None:
    await catalogue()
    me = await resident()
    many = [await make_slot(at(MON, 9, m)) for m in range(0, 60, 2)]
    meter = Meter()
    outcomes = Counter(await asyncio.gather(*[
        meter.run(partial(appointments.book, actor=me, slot_id=s.id, item_code=ITEM))
        for s in many]))
    assert outcomes == {"ok": 3, "booking_limit_reached": 27}


async def test_concurrent_reschedules_into_a_small_slot(clk: Clock, wide_pool: None) -> None:
    await catalogue()
    source = await make_slot(at(MON, 9), capacity=80)
    target = await make_slot(at(MON, 10), capacity=5)
    people = await _residents(80)
    booked = [await appointments.book(actor=p, slot_id=source.id, item_code=ITEM) for p in people]
    meter = Meter()
    outcomes = Counter(await asyncio.gather(*[
        meter.run(partial(appointments.reschedule, actor=p, appointment_id=a.id,
                                                           slot_id=target.id))
        for p, a in zip(people, booked, strict=True)]))
    assert outcomes == {"ok": 5, "slot_full": 75}
    assert await _assert_counters_match(target) == 5
    assert await _assert_counters_match(source) == 75
    # Every appointment is in exactly one of the two slots, still booked.
    assert await Appointment.filter(status=AppointmentStatus.booked).count() == 80
    assert meter.peak > 40


async def test_two_way_swaps_do_not_deadlock_or_leak(clk: Clock, wide_pool: None) -> None:
    await catalogue()
    a_slot = await make_slot(at(MON, 9), capacity=30)
    b_slot = await make_slot(at(MON, 10), capacity=30)
    left, right = await _residents(30), await _residents(30)
    la = [await appointments.book(actor=p, slot_id=a_slot.id, item_code=ITEM) for p in left]
    ra = [await appointments.book(actor=p, slot_id=b_slot.id, item_code=ITEM) for p in right]
    meter = Meter()
    moves = [meter.run(partial(appointments.reschedule,
        actor=p, appointment_id=a.id, slot_id=b_slot.id)) for p, a in zip(left, la, strict=True)]
    moves += [meter.run(partial(appointments.reschedule,
        actor=p, appointment_id=a.id, slot_id=a_slot.id)) for p, a in zip(right, ra, strict=True)]
    outcomes = Counter(await asyncio.gather(*moves))
    assert set(outcomes) <= {"ok", "slot_full"}
    assert await _assert_counters_match(a_slot) + await _assert_counters_match(b_slot) == 60


async def test_cancellations_promote_the_first_in_line_exactly(
        clk: Clock, wide_pool: None) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=5)
    holders = await _residents(5)
    held = [await appointments.book(actor=p, slot_id=slot.id, item_code=ITEM) for p in holders]
    waiting = await _residents(20)
    entries = [await waitlist.join(actor=p, slot_id=slot.id, item_code=ITEM) for p in waiting]
    meter = Meter()
    outcomes = Counter(await asyncio.gather(*[
        meter.run(partial(appointments.cancel, actor=p, appointment_id=a.id))
        for p, a in zip(holders, held, strict=True)]))
    assert outcomes == {"ok": 5}
    assert await _assert_counters_match(slot) == 5
    promoted = await WaitlistEntry.filter(status=WaitlistStatus.promoted).values_list(
        "id", flat=True)
    assert sorted(promoted) == [e.id for e in entries[:5]]
    for e in entries[:5]:
        await e.refresh_from_db()
        appt = await Appointment.get(id=e.appointment_id)
        assert appt.person_id == e.person_id


async def test_cancellations_waitlist_and_new_bookers_racing(
        clk: Clock, wide_pool: None) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=5)
    holders = await _residents(5)
    held = [await appointments.book(actor=p, slot_id=slot.id, item_code=ITEM) for p in holders]
    waiting = await _residents(20)
    for p in waiting:
        await waitlist.join(actor=p, slot_id=slot.id, item_code=ITEM)
    racers = await _residents(100)
    meter = Meter()
    tasks = [meter.run(partial(appointments.cancel, actor=p, appointment_id=a.id))
             for p, a in zip(holders, held, strict=True)]
    tasks += [meter.run(partial(appointments.book, actor=p, slot_id=slot.id, item_code=ITEM))
              for p in racers]
    results = await asyncio.gather(*tasks)
    assert Counter(results[:5]) == {"ok": 5}
    racer_wins = Counter(results[5:])["ok"]
    promoted = await WaitlistEntry.filter(status=WaitlistStatus.promoted).count()
    assert racer_wins + promoted == 5
    assert await _assert_counters_match(slot) == 5
    assert await WaitlistEntry.filter(status=WaitlistStatus.waiting).count() == 20 - promoted
    # Nobody is both waiting and booked for the slot.
    for e in await WaitlistEntry.filter(status=WaitlistStatus.waiting):
        assert not await Appointment.filter(slot_id=slot.id, person_id=e.person_id,
                                            holding=True).exists()
