"""The per-worker copy of slot rules and items a booking reads (services/bookingref.py): a
change made on this worker applies to the next booking, a change made on another worker within
the generation check (one second), and a booking never reads the copy for capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.catalogue import WindowKind
from models.users import Role
from services import appointments, bookingref, cache, guide, slots
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
    make_slot,
    resident,
)

__all__ = ["clk"]


async def _rule(days: int) -> None:
    staff = await account(Role.staff)
    await slots.set_rule(actor=staff, hall_code=HALL, rule=slots.RuleInput(
        window_kind=WindowKind.comprehensive, slot_minutes=30, capacity=6, green_percent=34,
        book_ahead_days=days))


async def _code(**kw: object) -> ErrorCode:
    with pytest.raises(AppError) as e:
        await appointments.book(**kw)
    return e.value.code


async def test_a_rule_change_applies_to_the_next_booking(clk: Clock) -> None:
    await catalogue()  # demo rule: a week ahead
    slot = await make_slot(at(T0.date() + timedelta(days=5), 9))
    me, other = await resident(), await resident()
    assert (await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)).id
    await _rule(days=3)  # the copy held a week; the slot is now beyond the horizon
    assert await _code(actor=other, slot_id=slot.id,
                       item_code=ITEM) is ErrorCode.slot_not_bookable


async def test_another_workers_change_is_seen_through_the_generation(
        clk: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    await catalogue()
    slot = await make_slot(at(T0.date() + timedelta(days=5), 9))
    me = await resident()
    assert await bookingref.rule(slot.hall_id, "comprehensive") is not None
    # Another worker turns the rule off: the database row changes and the generation in
    # Redis moves, but this worker's copy is untouched until it looks at the generation.
    from models.appointments import SlotRule

    await SlotRule.filter(hall_id=slot.hall_id).update(is_active=False)
    await cache.redis().set("booking:ref:generation", "changed-elsewhere")
    monkeypatch.setattr(bookingref, "_generation", (-1e9, bookingref._generation[1]))
    assert await _code(actor=me, slot_id=slot.id,
                       item_code=ITEM) is ErrorCode.slot_not_bookable


async def test_a_deactivated_item_is_refused_at_once(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(T0.date() + timedelta(days=2), 9))
    me, other = await resident(), await resident()
    assert (await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)).id
    await guide.deactivate_item(actor=await account(Role.staff), code=ITEM)
    assert await _code(actor=other, slot_id=slot.id, item_code=ITEM) is ErrorCode.not_found


async def test_capacity_is_never_taken_from_a_copy(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(T0.date() + timedelta(days=2), 9), capacity=1)
    first, second = await resident(), await resident()
    await appointments.book(actor=first, slot_id=slot.id, item_code=ITEM)
    assert await _code(actor=second, slot_id=slot.id, item_code=ITEM) is ErrorCode.slot_full
