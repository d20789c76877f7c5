"""Slot rules, slots cut from a hall's opening hours, the green-channel hold, and places.

Slots are materialised lazily: the first read of a (hall, window kind, date) inside the booking
horizon cuts that day's slots from the rule and inserts them in one statement guarded by the
unique (hall, window_kind, starts_at) key, so concurrent first reads produce one set of rows. Lazy
rather than a nightly sweep because only days somebody looks at cost rows, a rule change shows
up for every day not yet cut, and there is no job whose failure would leave a day unbookable.
Days already cut keep their slots when a rule changes: they may hold bookings.

A place is taken or given back only by a conditional UPDATE on the slot row (``booked <
capacity``), never read-then-write, so the counters can't pass capacity under any concurrency.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models.appointments import Pool, Slot, SlotRule
from models.catalogue import Hall, ServiceItem, Window, WindowKind
from models.users import Person, Role
from services import bookingref, clock, db, people
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import hall_in_scope
from services.settings import get_settings
from services.workcalendar import OpeningHours

GREEN_TAGS = frozenset({"disabled"})


@dataclass(frozen=True)
class RuleInput:
    window_kind: WindowKind
    slot_minutes: int
    capacity: int
    green_percent: int
    book_ahead_days: int
    is_active: bool = True


@dataclass(frozen=True)
class SlotView:
    slot: Slot
    remaining: int
    bookable: bool


@dataclass(frozen=True)
class DaySlots:
    hall: Hall
    window_kind: WindowKind
    day: date
    booking_open_until: date | None
    green: bool
    slots: list[SlotView]


async def hall_by_code(code: str) -> Hall:
    # Longer than the column can't exist, and the ORM would refuse the filter value.
    hall = await Hall.get_or_none(code=code, is_active=True) if len(code) <= 32 else None
    if hall is None:
        raise not_found("服务大厅")
    return hall


# --- rules -------------------------------------------------------------------------------


def _validate_rule(r: RuleInput) -> None:
    problems: dict[str, str] = {}
    if not 5 <= r.slot_minutes <= 240:
        problems["slot_minutes"] = "时段长度应在5到240分钟之间"
    if not 1 <= r.capacity <= 500:
        problems["capacity"] = "每个时段的名额应在1到500之间"
    if not 0 <= r.green_percent <= 100:
        problems["green_percent"] = "绿色通道预留比例应在0到100之间"
    if not 1 <= r.book_ahead_days <= 60:
        problems["book_ahead_days"] = "可提前预约天数应在1到60之间"
    if problems:
        raise AppError(ErrorCode.validation_failed, fields=problems)


async def set_rule(*, actor: Principal, hall_code: str, rule: RuleInput) -> SlotRule:
    if not actor.is_staff:
        raise forbidden()
    _validate_rule(rule)
    hall = await hall_in_scope(actor, hall_code, for_change=True)
    if not await Window.filter(hall=hall, kind=rule.window_kind).exists():
        raise not_found("该大厅的此类窗口")
    row, _ = await SlotRule.update_or_create(
        hall=hall, window_kind=rule.window_kind,
        defaults={"slot_minutes": rule.slot_minutes, "capacity": rule.capacity,
                  "green_percent": rule.green_percent, "book_ahead_days": rule.book_ahead_days,
                  "is_active": rule.is_active},
    )
    await bookingref.changed()  # bookings read rules through the per-worker copy
    return row


async def rules_of(*, actor: Principal, hall_code: str) -> tuple[Hall, list[SlotRule]]:
    if not actor.is_staff:
        raise forbidden()
    hall = await hall_in_scope(actor, hall_code)
    return hall, await SlotRule.filter(hall=hall).order_by("window_kind")


async def rule_for(hall_id: int, window_kind: WindowKind | str) -> SlotRule | None:
    return await SlotRule.get_or_none(hall_id=hall_id, window_kind=window_kind, is_active=True)


def green_hold_of(rule: SlotRule) -> int:
    """Places of each slot held for the green channel: the rule's share, rounded down."""
    return rule.capacity * rule.green_percent // 100


def horizon(rule: SlotRule | bookingref.RuleRef) -> date:
    return clock.today() + timedelta(days=rule.book_ahead_days)


# --- cutting slots -------------------------------------------------------------------------


def cut(hall: Hall, rule: SlotRule, day: date) -> list[tuple[datetime, datetime]]:
    """The day's slot times: whole slots inside each opening period; none on a closed day
    (public holidays closed, 调休 make-up workdays open — the calendar decides)."""
    hours = OpeningHours.from_seed(hall.hours)
    length = timedelta(minutes=rule.slot_minutes)
    out = []
    for opens, closes in hours.periods_on(day):
        start = opens
        while start + length <= closes:
            out.append((start, start + length))
            start += length
    return out


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=clock.SHANGHAI)
    return start, start + timedelta(days=1)


async def materialise(hall: Hall, rule: SlotRule, day: date) -> list[Slot]:
    lo, hi = _day_bounds(day)
    qs = Slot.filter(hall_id=hall.id, window_kind=rule.window_kind, starts_at__gte=lo,
                     starts_at__lt=hi).order_by("starts_at")
    existing = await qs
    if existing:
        return existing
    times = cut(hall, rule, day)
    if not times:
        return []
    hold = green_hold_of(rule)
    # One multi-row INSERT: all of the day's slots or, if a concurrent first read won, none of
    # ours (theirs are identical).
    with contextlib.suppress(IntegrityError):
        await Slot.bulk_create(
            [Slot(hall_id=hall.id, window_kind=rule.window_kind, starts_at=s, ends_at=e,
                  general_capacity=rule.capacity - hold, green_hold=hold)
             for s, e in times])
    return await qs


# --- green channel -------------------------------------------------------------------------


def is_green(person: Person | None, *, on: date, by_worker: bool = False) -> bool:
    """65+ on the day of the slot by the ID's birth date, disabled, or booked for them by a
    community worker."""
    if by_worker:
        return True
    if person is None:
        return False
    if GREEN_TAGS & set(person.tags or []):
        return True
    return people.age_of(person, on) >= get_settings().appointment_green_age


def hold_released(slot: Slot) -> bool:
    """The green hold lasts until the day before the slot; from 00:00 that day anyone may
    take the held places."""
    return clock.today() >= clock.local(slot.starts_at).date() - timedelta(days=1)


def pools_for(slot: Slot, *, green: bool) -> list[Pool]:
    # A green booker uses the held places first, leaving general places for everyone else.
    if green:
        return [Pool.green, Pool.general]
    if hold_released(slot):
        return [Pool.general, Pool.green]
    return [Pool.general]


def remaining_for(slot: Slot, *, green: bool) -> int:
    free = {Pool.general: slot.general_capacity - slot.general_booked,
            Pool.green: slot.green_hold - slot.green_booked}
    return max(0, sum(free[p] for p in pools_for(slot, green=green)))


# pool -> (its counter, its size): the conditional UPDATE that takes a place in it.
_POOL_COLUMNS = {Pool.green: ("green_booked", "green_hold"),
                 Pool.general: ("general_booked", "general_capacity")}


async def take_place(slot: Slot, *, green: bool) -> Pool | None:
    """Take one place with a conditional update; the pool it came from, or None if full.
    Hand-written (the rush-hour path, docs/appointments.md "Speed"): the same statement the
    ORM wrote, without building it per booking. ``_meta.db`` is the caller's transaction."""
    conn = Slot._meta.db
    ph = db.placeholder(conn)
    for pool in pools_for(slot, green=green):
        booked, size = _POOL_COLUMNS[pool]
        taken, _ = await conn.execute_query(
            f"UPDATE {Slot._meta.db_table} SET {booked} = {booked} + 1 "  # noqa: S608 - names are ours
            f"WHERE id = {ph} AND {booked} < {size}", [slot.id])
        if taken:
            return pool
    return None


# What the booking path uses of a slot and its hall (the answer shows the hall's code and name).
_SLOT_COLUMNS = ("id", "hall_id", "window_kind", "starts_at", "ends_at", "general_capacity",
                 "general_booked", "green_hold", "green_booked")
_HALL_COLUMNS = ("id", "code", "name")


async def with_hall(slot_id: int) -> Slot | None:
    """The slot and its hall (``slot.hall``), the columns a booking uses, in one hand-written
    statement — a fraction of the CPU of the ORM's ``select_related`` of every column. Both
    instances are partial (``db.instance``): for reading, not for saving."""
    conn = Slot._meta.db
    rows = await conn.execute_query_dict(
        f"SELECT {db.columns(Slot, 's', conn, prefix='s__', only=_SLOT_COLUMNS)}, "  # noqa: S608
        f"{db.columns(Hall, 'h', conn, prefix='h__', only=_HALL_COLUMNS)} "
        f"FROM {Slot._meta.db_table} s JOIN {Hall._meta.db_table} h ON h.id = s.hall_id "
        f"WHERE s.id = {db.placeholder(conn)}", [slot_id])
    if not rows:
        return None
    row = rows[0]
    slot = db.instance(Slot, {k[3:]: v for k, v in row.items() if k.startswith("s__")})
    slot.hall = db.instance(Hall, {k[3:]: v for k, v in row.items() if k.startswith("h__")})
    return slot


async def release_place(slot_id: int, pool: Pool) -> None:
    if pool is Pool.green:
        await Slot.filter(id=slot_id, green_booked__gt=0).update(
            green_booked=F("green_booked") - 1)
    else:
        await Slot.filter(id=slot_id, general_booked__gt=0).update(
            general_booked=F("general_booked") - 1)


# --- listing -------------------------------------------------------------------------------


async def _window_kind_for(hall: Hall, window_kind: WindowKind | None,
                           item_code: str | None) -> WindowKind:
    if item_code is not None:
        item = await ServiceItem.get_or_none(code=item_code, is_active=True)
        if item is None:
            raise not_found("事项")
        if item.hall_codes and hall.code not in item.hall_codes:
            raise AppError(ErrorCode.item_not_offered, "该大厅不办理此事项")
        if window_kind is not None and window_kind != item.window_kind:
            raise AppError(ErrorCode.item_not_offered, "该事项不在此类窗口办理",
                           extra={"window_kind": str(item.window_kind)})
        return WindowKind(item.window_kind)
    # 无差别综合受理: the comprehensive window is where a resident goes by default.
    return window_kind or WindowKind.comprehensive


async def list_day(*, actor: Principal, hall_code: str, day: date,
                   window_kind: WindowKind | None = None,
                   item_code: str | None = None) -> DaySlots:
    hall = await hall_by_code(hall_code)
    kind = await _window_kind_for(hall, window_kind, item_code)
    person = await people.person_of(actor.user_id)
    # A community worker books for others, and those bookings use the green channel.
    green = is_green(person, on=day, by_worker=actor.has(Role.community_worker))
    rule = await rule_for(hall.id, kind)
    if rule is None:
        return DaySlots(hall, kind, day, None, green, [])
    until = horizon(rule)
    if not clock.today() <= day <= until:
        return DaySlots(hall, kind, day, until, green, [])
    now = clock.now()
    views = [SlotView(s, remaining_for(s, green=green),
                      s.starts_at > now and remaining_for(s, green=green) > 0)
             for s in await materialise(hall, rule, day)]
    return DaySlots(hall, kind, day, until, green, views)


async def seed_slot_rules(data: dict[str, object]) -> None:
    """Demo rules: every window of every demo hall takes 30-minute appointments, six a slot,
    a third (two) held for the green channel, bookable a week ahead."""
    halls = data.get("halls", [])
    if not isinstance(halls, list):
        return
    for h in halls:
        hall = await Hall.get_or_none(code=h["code"])
        if hall is None:
            continue
        for w in h.get("windows", []):
            await SlotRule.get_or_create(
                hall=hall, window_kind=w["kind"],
                defaults={"slot_minutes": 30, "capacity": 6, "green_percent": 34,
                          "book_ahead_days": 7},
            )
    await bookingref.changed()
