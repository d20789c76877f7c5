"""Slot generation from opening hours and the holiday calendar, lazy materialisation, rules,
and the green-channel hold."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from models.appointments import Pool, Slot
from models.catalogue import WindowKind
from models.users import Role
from services import appointments, slots
from services.errors import AppError, ErrorCode
from tests.unit.test_appointments_common import (
    HALL,
    ITEM,
    T0,
    Clock,
    account,
    at,
    catalogue,
    clk,
    id_number,
    make_slot,
    resident,
)

__all__ = ["clk"]


async def _wide_rule(days: int = 30) -> None:
    staff = await account(Role.staff)
    await slots.set_rule(actor=staff, hall_code=HALL, rule=slots.RuleInput(
        window_kind=WindowKind.comprehensive, slot_minutes=30, capacity=6, green_percent=34,
        book_ahead_days=days))


async def test_weekday_slots_follow_opening_hours(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    day = await slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 21),
                               window_kind=WindowKind.comprehensive)
    starts = [slots_view.slot.starts_at for slots_view in day.slots]
    # 09:00–12:00 and 14:00–17:30 in 30-minute slots: 6 + 7.
    assert len(starts) == 13
    assert starts[0] == at(date(2026, 9, 21), 9)
    assert starts[5] == at(date(2026, 9, 21), 11, 30)
    assert starts[6] == at(date(2026, 9, 21), 14)
    assert day.slots[-1].slot.ends_at == at(date(2026, 9, 21), 17, 30)
    assert all(s.utcoffset() == timedelta(hours=8) for s in starts)
    assert all(v.slot.capacity == 6 and v.remaining == 4 and v.bookable for v in day.slots)


async def test_holidays_closed_and_makeup_workdays_open(clk: Clock) -> None:
    await catalogue()
    await _wide_rule()
    me = await resident()

    async def count(d: date) -> int:
        got = await slots.list_day(actor=me, hall_code=HALL, day=d,
                                   window_kind=WindowKind.comprehensive)
        return len(got.slots)

    assert await count(date(2026, 9, 19)) == 0  # ordinary Saturday
    assert await count(date(2026, 9, 20)) == 13  # Sunday worked for National Day (调休)
    assert await count(date(2026, 10, 1)) == 0  # National Day, a Thursday
    assert await count(date(2026, 10, 7)) == 0  # still the holiday, a Wednesday
    assert await count(date(2026, 10, 8)) == 13
    assert await count(date(2026, 10, 10)) == 13  # Saturday make-up workday


async def test_booking_horizon(clk: Clock) -> None:
    await catalogue()  # demo rule: a week ahead
    me = await resident()
    far = await slots.list_day(actor=me, hall_code=HALL, day=T0.date() + timedelta(days=8),
                               window_kind=WindowKind.comprehensive)
    assert far.slots == [] and far.booking_open_until == T0.date() + timedelta(days=7)
    past = await slots.list_day(actor=me, hall_code=HALL, day=T0.date() - timedelta(days=1),
                                window_kind=WindowKind.comprehensive)
    assert past.slots == []
    # Today: slots that already started are listed but not bookable.
    today = await slots.list_day(actor=me, hall_code=HALL, day=T0.date(),
                                 window_kind=WindowKind.comprehensive)
    assert [v.bookable for v in today.slots][:4] == [False, False, False, True]


async def test_materialisation_is_idempotent_under_concurrent_first_reads(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    await asyncio.gather(*[
        slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 22),
                       window_kind=WindowKind.comprehensive) for _ in range(10)])
    assert await Slot.filter(starts_at__gte=at(date(2026, 9, 22), 0),
                             starts_at__lt=at(date(2026, 9, 23), 0)).count() == 13


async def test_item_filter_picks_the_window(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    day = await slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 21),
                               item_code=ITEM)
    assert day.window_kind == WindowKind.comprehensive and len(day.slots) == 13
    with pytest.raises(AppError) as e:
        await slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 21), item_code=ITEM,
                             window_kind=WindowKind.real_estate)
    assert e.value.code is ErrorCode.item_not_offered
    with pytest.raises(AppError) as e:
        await slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 21), item_code="NOPE-1")
    assert e.value.code is ErrorCode.not_found
    default = await slots.list_day(actor=me, hall_code=HALL, day=date(2026, 9, 21))
    assert default.window_kind == WindowKind.comprehensive


async def test_rules_are_staff_only_and_validated(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    rule = slots.RuleInput(window_kind=WindowKind.comprehensive, slot_minutes=20, capacity=3,
                           green_percent=150, book_ahead_days=7)
    with pytest.raises(AppError) as e:
        await slots.set_rule(actor=me, hall_code=HALL, rule=rule)
    assert e.value.code is ErrorCode.forbidden
    staff = await account(Role.staff)
    with pytest.raises(AppError) as e:
        await slots.set_rule(actor=staff, hall_code=HALL, rule=rule)
    assert "green_percent" in e.value.fields
    ok = await slots.set_rule(actor=staff, hall_code=HALL, rule=slots.RuleInput(
        window_kind=WindowKind.comprehensive, slot_minutes=20, capacity=7, green_percent=30,
        book_ahead_days=7))
    assert slots.green_hold_of(ok) == 2  # 30 % of 7, rounded down


async def test_green_hold_until_the_day_before_then_released(clk: Clock) -> None:
    await catalogue()
    # Tuesday 22 Sep 10:00; the hold lasts until Monday 21 Sep 00:00.
    slot = await make_slot(at(date(2026, 9, 22), 10), capacity=3, green_hold=1)
    a, b, c = [await resident() for _ in range(3)]
    zhang = await resident("19410305")  # 85
    assert slots.remaining_for(slot, green=False) == 2
    assert slots.remaining_for(slot, green=True) == 3
    await appointments.book(actor=a, slot_id=slot.id, item_code=ITEM)
    await appointments.book(actor=b, slot_id=slot.id, item_code=ITEM)
    with pytest.raises(AppError) as e:
        await appointments.book(actor=c, slot_id=slot.id, item_code=ITEM)
    assert e.value.code is ErrorCode.slot_full
    old = await appointments.book(actor=zhang, slot_id=slot.id, item_code=ITEM)
    assert old.pool == Pool.green

    # Same again on a fresh slot, but the general resident comes on the day before.
    slot2 = await make_slot(at(date(2026, 9, 22), 11), capacity=3, green_hold=1)
    await appointments.book(actor=a, slot_id=slot2.id, item_code=ITEM)
    await appointments.book(actor=b, slot_id=slot2.id, item_code=ITEM)
    clk.set(at(date(2026, 9, 21), 0, 1))
    late = await appointments.book(actor=c, slot_id=slot2.id, item_code=ITEM)
    assert late.pool == Pool.green  # the released held place
    with pytest.raises(AppError) as e:
        await appointments.book(actor=zhang, slot_id=slot2.id, item_code=ITEM)
    assert e.value.code is ErrorCode.slot_full
    await slot2.refresh_from_db()
    assert slot2.booked == slot2.capacity == 3


async def test_green_residents_use_held_places_first(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(date(2026, 9, 22), 10), capacity=3, green_hold=2)
    li = await resident("19750812", tags=["disabled"])
    general = await resident()
    appt = await appointments.book(actor=li, slot_id=slot.id, item_code=ITEM)
    assert appt.pool == Pool.green
    # The general place is still there for a resident without the green channel.
    await appointments.book(actor=general, slot_id=slot.id, item_code=ITEM)
    await slot.refresh_from_db()
    assert (slot.general_booked, slot.green_booked) == (1, 1)


async def test_worker_bookings_count_as_green(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(date(2026, 9, 22), 10), capacity=1, green_hold=1)
    worker = await account(Role.community_worker)
    appt = await appointments.book(
        actor=worker, slot_id=slot.id, item_code=ITEM,
        on_behalf_of=appointments.OnBehalf(name="邻居甲", id_number=id_number("19800101")))
    assert appt.pool == Pool.green
