"""Booking, cancelling, rescheduling and checking in; no-shows, reminders and waitlist offers.

Correctness under concurrency rests on three things, all inside one transaction per booking:
1. the person's row is locked first (``SELECT ... FOR UPDATE``), so one person's bookings run
   one at a time and the active-bookings limit can't be raced;
2. the place is taken by a conditional UPDATE on the slot (``services.slots.take_place``);
3. a unique key (slot, person, holding) makes a second live booking of the same slot by the
   same person impossible even if 1. were bypassed.
Every transaction takes its locks in the same order (person, appointment, slots by id), and a
deadlock the database still reports is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.appointments import (
    Appointment,
    AppointmentStatus,
    Pool,
    Slot,
    WaitlistEntry,
    WaitlistStatus,
)
from models.cases import ProxyScope
from models.catalogue import Hall, ServiceItem
from models.messages import MessageCategory
from models.users import Person, Role, User
from services import (
    audit,
    bookingref,
    clock,
    db,
    deskview,
    jobs,
    notifications,
    onbehalf,
    outbox,
    people,
    ratelimit,
    ratings,
    slots,
)
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import hall_in_scope, scope_of
from services.settings import get_settings
from services.verification import verified_person_of

log = logging.getLogger(__name__)

T = TypeVar("T")

ACTIVE = (AppointmentStatus.booked,)


@dataclass(frozen=True)
class OnBehalf:
    name: str
    id_number: str


class _NotOffered(Exception):
    """A waitlist entry was claimed by someone else, or can't be booked now: try the next."""


# --- helpers -------------------------------------------------------------------------------


async def _retrying(fn: Callable[[], Awaitable[T]]) -> T:
    # InnoDB resolves a lock cycle by rolling one transaction back; the rolled-back one is
    # safe to run again from the start (db.retrying: by error code, with jittered back-off;
    # inside an Idempotency-Key's outer transaction the outermost level retries).
    return await db.retrying(fn)


def _stamp(dt: datetime) -> str:
    return clock.local(dt).strftime("%Y%m%d%H%M")


async def check_rate(*, actor: Principal) -> None:
    """Per-user booking rate limit (bots); community workers book for many people."""
    s = get_settings()
    limit = (s.appointment_worker_book_rate_limit if actor.has(Role.community_worker)
             else s.appointment_book_rate_limit)
    await ratelimit.hit(f"appt:book:{actor.user_id}", limit=limit,
                        window_seconds=s.appointment_book_rate_window_seconds,
                        message="预约操作过于频繁，请稍后再试")


async def suspended_until(person_id: int) -> datetime | None:
    """Booking is suspended for a while after repeated no-shows within a window."""
    s = get_settings()
    now = clock.now()
    ends = await Appointment.filter(
        person_id=person_id, status=AppointmentStatus.no_show,
        ends_at__gte=now - timedelta(days=s.appointment_no_show_window_days),
    ).order_by("-ends_at").limit(s.appointment_no_show_limit).values_list("ends_at", flat=True)
    if len(ends) < s.appointment_no_show_limit:
        return None
    latest: datetime = ends[0]  # type: ignore[assignment]
    until = latest + timedelta(days=s.appointment_no_show_suspension_days)
    return clock.local(until) if until > now else None


@dataclass(frozen=True)
class _PersonFacts:
    active: int  # bookings still to come
    holds_slot: bool  # already holds a place in the slot asked for
    recent_no_shows: int  # within the no-show window


async def _person_facts(person_id: int, slot_id: int) -> _PersonFacts:
    """What the booking rules need to know about a person, in one statement (three reads
    before). Run before the transaction to refuse early, and again after the person's lock,
    where it decides. Plain SQL, as in services/deskview.py: Tortoise spends more CPU building
    this aggregate than the database spends answering it; values go through the model
    fields' own converters, so SQLite and MySQL compare alike. ``_meta.db`` is the
    transaction's connection when called inside one."""
    s = get_settings()
    now = clock.now()
    ends = Appointment._meta.fields_map["ends_at"]
    conn = Appointment._meta.db
    ph = db.placeholder(conn)
    rows = await conn.execute_query_dict(
        "SELECT "  # noqa: S608 - table name from model meta, values bound
        f"COALESCE(SUM(CASE WHEN status = {ph} AND ends_at > {ph} THEN 1 ELSE 0 END), 0) "
        "AS active, "
        f"COALESCE(SUM(CASE WHEN slot_id = {ph} AND holding = {ph} THEN 1 ELSE 0 END), 0) "
        "AS holds, "
        f"COALESCE(SUM(CASE WHEN status = {ph} AND ends_at >= {ph} THEN 1 ELSE 0 END), 0) "
        f"AS no_shows FROM {Appointment._meta.db_table} WHERE person_id = {ph}",
        [AppointmentStatus.booked.value, ends.to_db_value(now, Appointment),
         slot_id, True,
         AppointmentStatus.no_show.value,
         ends.to_db_value(now - timedelta(days=s.appointment_no_show_window_days),
                          Appointment),
         person_id])
    row = rows[0]
    return _PersonFacts(active=int(row["active"]), holds_slot=bool(int(row["holds"])),
                        recent_no_shows=int(row["no_shows"]))


def _check_limits(facts: _PersonFacts) -> None:
    if facts.holds_slot:
        raise AppError(ErrorCode.already_booked, "已预约该时段，无需重复预约")
    s = get_settings()
    if facts.active >= s.appointment_max_active:
        raise AppError(ErrorCode.booking_limit_reached,
                       f"未完成的预约最多{s.appointment_max_active}个，请先办理或取消已有预约")


async def _check_not_suspended(person_id: int, facts: _PersonFacts | None = None) -> None:
    if facts is not None and facts.recent_no_shows < get_settings().appointment_no_show_limit:
        return  # too few no-shows in the window for any suspension: no need to look closer
    until = await suspended_until(person_id)
    if until is not None:
        s = get_settings()
        raise AppError(
            ErrorCode.booking_suspended,
            f"近{s.appointment_no_show_window_days}天内预约未到达"
            f"{s.appointment_no_show_limit}次，{until:%Y年%m月%d日 %H:%M}前暂停预约",
            extra={"suspended_until": until.isoformat()},
        )


async def _bookable_slot(slot_id: int) -> Slot:
    slot = await slots.with_hall(slot_id)
    if slot is None:
        raise not_found("预约时段")
    if slot.starts_at <= clock.now():
        raise AppError(ErrorCode.slot_not_bookable, "该时段已开始或已结束")
    rule = await bookingref.rule(slot.hall_id, slot.window_kind)  # type: ignore[attr-defined]
    if rule is None or clock.local(slot.starts_at).date() > slots.horizon(rule):
        raise AppError(ErrorCode.slot_not_bookable, "该时段暂未开放预约")
    return slot


async def _item_for(slot: Slot, item_code: str) -> bookingref.ItemRef:
    item = await bookingref.item(item_code)
    if item is None:
        raise not_found("事项")
    if item.window_kind != str(getattr(slot.window_kind, "value", slot.window_kind)):
        raise AppError(ErrorCode.item_not_offered, "该事项不在此窗口办理")
    if item.hall_codes and slot.hall.code not in item.hall_codes:
        raise AppError(ErrorCode.item_not_offered, "该大厅不办理此事项")
    return item


async def _account_of(person_id: int) -> int | None:
    user = await User.filter(person_id=person_id).only("id").first()
    return user.id if user else None


async def resolve_person(actor: Principal, on_behalf_of: OnBehalf | None) -> Person:
    """Whom a booking (or a waitlist entry) is for: the caller's own real-name person, or
    someone they act for through a recorded relation (services/onbehalf.py, which also
    answers every mismatch alike and limits attempts)."""
    if on_behalf_of is not None:
        return await onbehalf.person_for_booking(actor, name=on_behalf_of.name,
                                                 id_number=on_behalf_of.id_number)
    person = await people.person_of(actor.user_id)
    if person is None:
        raise AppError(ErrorCode.identity_required)
    return person


# What a booking uses of the person: the green channel's facts and the answer's masked name.
_PERSON_COLUMNS = ("id", "birth_date", "tags", "name_masked", "id_number_masked")


async def _lock_person(*, person_id: int | None = None,
                       account_id: int | None = None) -> Person | None:
    """The person — by id, or the one bound to an account — read and locked in one statement,
    the first of a booking's transaction: one person's bookings then run one at a time, and
    the limits read after it can't be raced. (The lock comes first: a plain read before it
    would pin an older snapshot.) Hand-written, as ``slots.with_hall``; ``_meta.db`` is the
    caller's transaction."""
    conn = Person._meta.db
    ph = db.placeholder(conn)
    table = Person._meta.db_table
    arg: int | None
    if person_id is not None:
        source, arg = f"{table} p WHERE p.id = {ph}", person_id
    else:
        # A join, not ``p.id = (SELECT person_id FROM users ...)``: that subquery is a plain
        # read, which under REPEATABLE READ fixes the transaction's snapshot *before* the
        # lock is waited for — the limits read after it then missed bookings committed in
        # between (caught by tests/integration/test_appointments_mysql.py). In a locking
        # join every row read is a locking read; the account's row is locked along, which
        # costs nothing here (nothing else writes it mid-booking).
        source, arg = (f"{User._meta.db_table} u JOIN {table} p ON p.id = u.person_id "
                       f"WHERE u.id = {ph}"), account_id
    rows = await conn.execute_query_dict(
        f"SELECT {db.columns(Person, 'p', conn, only=_PERSON_COLUMNS)} "  # noqa: S608
        f"FROM {source}{db.for_update(conn)}", [arg])
    return db.instance(Person, rows[0]) if rows else None


# --- booking -------------------------------------------------------------------------------


async def _book_locked(
    *, slot: Slot, item_code: str, booked_by: int, on_behalf: bool, resident_id: int | None,
    person_id: int | None = None, account_id: int | None = None, green: bool | None = None,
    waitlist_entry_id: int | None = None,
) -> tuple[Appointment, Person]:
    """The booking itself; runs inside the caller's transaction. The person is ``person_id``
    or the one bound to ``account_id`` (a self-booking: no read before the transaction);
    ``green`` None means decided from that person (age, tags)."""
    person = await _lock_person(person_id=person_id, account_id=account_id)
    if person is None:
        raise AppError(ErrorCode.identity_required)
    if green is None:
        green = slots.is_green(person, on=clock.local(slot.starts_at).date())
    # Refused before anything is written: a slot visibly full for this person's pools (read
    # just before the transaction: the conditional UPDATE still decides), a suspension, the
    # limits — all from one read of the person's bookings, made under the lock.
    if slots.remaining_for(slot, green=green) <= 0:
        raise AppError(ErrorCode.slot_full)
    facts = await _person_facts(person.id, slot.id)
    await _check_not_suspended(person.id, facts)
    _check_limits(facts)
    if waitlist_entry_id is not None:
        claimed = await WaitlistEntry.filter(id=waitlist_entry_id,
                                             status=WaitlistStatus.waiting).update(
            status=WaitlistStatus.promoted, waiting=None)
        if not claimed:
            raise _NotOffered
    pool = await slots.take_place(slot, green=green)
    if pool is None:
        raise AppError(ErrorCode.slot_full)
    try:
        appt = await Appointment.create(
            resident_id=resident_id, person_id=person.id, booked_by_id=booked_by,
            slot_id=slot.id, hall_id=slot.hall_id,  # type: ignore[attr-defined]
            window_kind=slot.window_kind, item_code=item_code, pool=pool,
            on_behalf=on_behalf, starts_at=slot.starts_at, ends_at=slot.ends_at,
            check_in_token=secrets.token_urlsafe(12),
        )
    except IntegrityError as exc:
        raise AppError(ErrorCode.already_booked) from exc
    if waitlist_entry_id is not None:
        await WaitlistEntry.filter(id=waitlist_entry_id).update(appointment_id=appt.id)
    return appt, person


async def book(
    *, actor: Principal, slot_id: int, item_code: str, on_behalf_of: OnBehalf | None = None,
    request_id: str = "",
) -> Appointment:
    """The rush-hour path (docs/appointments.md "Speed"): one read before the transaction
    (the slot, refusing a slot full for anyone), then person lock, the person's bookings,
    the conditional UPDATE, the INSERT and the notice's outbox row, and COMMIT."""
    person_id: int | None = None
    if on_behalf_of is not None:
        # The relation check comes first, before anything about the slot is told: it
        # counts every attempt.
        person_id = (await resolve_person(actor, on_behalf_of)).id
    slot = await _bookable_slot(slot_id)
    # Full even for a green booker (who may use every pool) is full for anyone: refused
    # with the one read, so a crowd behind a sold-out slot never queues for a lock.
    if slots.remaining_for(slot, green=True) <= 0:
        raise AppError(ErrorCode.slot_full)
    await _item_for(slot, item_code)
    by_worker = on_behalf_of is not None
    resident_id = await _account_of(person_id) if person_id is not None else actor.user_id

    async def attempt() -> tuple[Appointment, Person]:
        async with in_transaction() as conn:
            appt, person = await _book_locked(
                slot=slot, item_code=item_code, booked_by=actor.user_id, on_behalf=by_worker,
                resident_id=resident_id, person_id=person_id,
                account_id=None if by_worker else actor.user_id,
                green=True if by_worker else None)
            # 预约成功, for self-booking too (the centre keeps it even when WeChat can't
            # deliver), promised in the booking's own transaction.
            await _queue_notice(appt.id, "booked", using_db=conn)
            return appt, person

    appt, person = await _retrying(attempt)
    # What the answer shows, already in hand: the caller needn't read the row back.
    appt.hall, appt.person = slot.hall, person
    await deskview.appointment_changed(person.id, clock.local(slot.starts_at).date())
    if by_worker:
        # The worker typed in someone's name and ID number: leave a trace the person can see
        # in their access log.
        await audit.record(actor=actor, person_id=person.id, action="appointment.book_on_behalf",
                           fields_read=[], reason=f"代预约 #{appt.id}", request_id=request_id)
    return appt


# --- reading -------------------------------------------------------------------------------


async def _is_theirs(actor: Principal, appt: Appointment) -> bool:
    """The appointment is the caller's own (their account, or their proven real-name person:
    bookings others made for a person show only to an account that proved being them)."""
    if actor.user_id == appt.resident_id:  # type: ignore[attr-defined]
        return True
    mine = await verified_person_of(actor.user_id)
    return mine is not None and mine.id == appt.person_id  # type: ignore[attr-defined]


async def access_appointment(actor: Principal, appointment_id: int, *, for_change: bool = False,
                             lock: bool = False) -> Appointment:
    """The one decision on who sees an appointment: its resident and whoever booked it, and
    staff whose scope covers its hall (services/scope.py); anyone else gets not_found.
    ``for_change`` (cancel, reschedule, the resident's check-in): the resident's side only,
    staff reading is not enough, and the worker who booked it only while they still may act
    for the person (role and relation, as when booking). ``lock``: FOR UPDATE, inside the
    caller's transaction."""
    q = Appointment.filter(id=appointment_id)
    appt = await (q.select_for_update() if lock else q).select_related("hall", "person").first()
    if appt is None:
        raise not_found("预约")
    if await _is_theirs(actor, appt):
        return appt
    if actor.user_id == appt.booked_by_id:  # type: ignore[attr-defined]
        if for_change:
            await onbehalf.may_act_for(actor, scope=ProxyScope.book,
                                       person_id=appt.person_id)  # type: ignore[attr-defined]
        return appt
    if not for_change and actor.is_staff and (await scope_of(actor)).covers(
            hall_id=appt.hall_id, hall_code=appt.hall.code):  # type: ignore[attr-defined]
        return appt
    raise not_found("预约")


async def get(*, actor: Principal, appointment_id: int) -> Appointment:
    return await access_appointment(actor, appointment_id)


async def list_mine(*, actor: Principal, status: AppointmentStatus | None = None,
                    cursor: int | None = None, limit: int = 20) -> list[Appointment]:
    """Appointments for me (however they were booked) and those I booked for others."""
    cond = Q(booked_by_id=actor.user_id) | Q(resident_id=actor.user_id)
    mine = await verified_person_of(actor.user_id)
    if mine is not None:
        cond |= Q(person_id=mine.id)
    qs = Appointment.filter(cond).select_related("hall", "person").order_by("-id")
    if status is not None:
        qs = qs.filter(status=status)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return await qs.limit(limit)


async def hall_day(*, actor: Principal, hall_code: str, day: date) -> list[Appointment]:
    """A hall's appointments on a day, for its staff (masked like everything else)."""
    if not actor.is_staff:
        raise forbidden()
    hall = await hall_in_scope(actor, hall_code)
    lo = datetime.combine(day, datetime.min.time(), tzinfo=clock.SHANGHAI)
    return await Appointment.filter(
        hall_id=hall.id, starts_at__gte=lo, starts_at__lt=lo + timedelta(days=1),
    ).select_related("hall", "person").order_by("starts_at", "id").limit(1000)


async def item_names(codes: set[str]) -> dict[str, str]:
    names = {c: ref.name for c in codes if (ref := bookingref.cached_item(c)) is not None}
    missing = [c for c in codes if c not in names]
    if missing:
        rows = await ServiceItem.filter(code__in=missing).values_list("code", "name")
        names.update({str(c): str(n) for c, n in rows})
    return names


# --- cancel / reschedule -------------------------------------------------------------------


def _check_cutoff(appt: Appointment, what: str) -> None:
    minutes = get_settings().appointment_cancel_cutoff_minutes
    if clock.now() > appt.starts_at - timedelta(minutes=minutes):
        raise AppError(ErrorCode.cancel_too_late,
                       f"开始前{minutes}分钟内不能{what}，如不能前往请联系大厅")


async def cancel(*, actor: Principal, appointment_id: int) -> Appointment:
    appt = await access_appointment(actor, appointment_id, for_change=True)

    async def attempt() -> Appointment:
        async with in_transaction():
            row = await Appointment.select_for_update().get(id=appt.id)
            if row.status != AppointmentStatus.booked:
                raise AppError(ErrorCode.appointment_not_active)
            _check_cutoff(row, "取消")
            row.status, row.holding, row.cancelled_at = (AppointmentStatus.cancelled, None,
                                                         clock.now())
            await row.save(update_fields=["status", "holding", "cancelled_at"])
            await slots.release_place(row.slot_id, Pool(row.pool))  # type: ignore[attr-defined]
            return row

    row = await _retrying(attempt)
    await deskview.changed(row.person_id)  # type: ignore[attr-defined]
    await offer_waitlist(slot_id=row.slot_id)  # type: ignore[attr-defined]
    return await get(actor=actor, appointment_id=row.id)


async def reschedule(*, actor: Principal, appointment_id: int, slot_id: int) -> Appointment:
    """Move to another slot: the new place is taken before the old one is given back, in one
    transaction, so a failure leaves the original booking exactly as it was."""
    appt = await access_appointment(actor, appointment_id, for_change=True)
    new = await _bookable_slot(slot_id)
    await _item_for(new, appt.item_code)
    green = slots.is_green(appt.person, on=clock.local(new.starts_at).date(),
                           by_worker=appt.on_behalf)

    async def attempt() -> tuple[Appointment, int]:
        async with in_transaction() as conn:
            await Person.select_for_update().get(id=appt.person_id)  # type: ignore[attr-defined]
            row = await Appointment.select_for_update().get(id=appt.id)
            if row.status != AppointmentStatus.booked:
                raise AppError(ErrorCode.appointment_not_active)
            _check_cutoff(row, "改约")
            old_slot_id: int = row.slot_id  # type: ignore[attr-defined]
            if old_slot_id == new.id or await Appointment.filter(
                    slot_id=new.id, person_id=row.person_id,  # type: ignore[attr-defined]
                    holding=True).exists():
                raise AppError(ErrorCode.already_booked, "已预约该时段")
            # Both slot rows locked in id order: two residents swapping slots can't deadlock.
            await Slot.filter(id__in=sorted({old_slot_id, new.id})).order_by(
                "id").select_for_update()
            pool = await slots.take_place(new, green=green)
            if pool is None:
                raise AppError(ErrorCode.slot_full)
            await slots.release_place(old_slot_id, Pool(row.pool))
            row.slot_id = new.id
            row.hall_id = new.hall_id  # type: ignore[attr-defined]
            row.starts_at, row.ends_at, row.pool = new.starts_at, new.ends_at, pool
            row.reminded_day = row.reminded_hour = False
            await row.save(update_fields=["slot_id", "hall_id", "starts_at", "ends_at", "pool",
                                          "reminded_day", "reminded_hour"])
            if row.resident_id is not None and row.resident_id != actor.user_id:  # type: ignore[attr-defined]
                await _queue_notice(row.id, f"moved:{_stamp(row.starts_at)}", using_db=conn)
            return row, old_slot_id

    row, old_slot_id = await _retrying(attempt)
    await deskview.changed(row.person_id)  # type: ignore[attr-defined]
    await offer_waitlist(slot_id=old_slot_id)
    return await get(actor=actor, appointment_id=row.id)


# --- waitlist offers -----------------------------------------------------------------------


async def offer_waitlist(*, slot_id: int, max_tries: int = 20) -> list[Appointment]:
    """Give free places of a slot to its waitlist, first come first served, with the same
    booking path as everyone else, so capacity holds. Returns the appointments made."""
    slot = await Slot.get_or_none(id=slot_id).select_related("hall")
    if slot is None or slot.starts_at <= clock.now():
        return []
    made: list[Appointment] = []
    entries = await WaitlistEntry.filter(slot_id=slot_id, status=WaitlistStatus.waiting
                                         ).select_related("person").order_by("id").limit(max_tries)
    for entry in entries:
        await slot.refresh_from_db(fields=["general_booked", "green_booked"])
        if slots.remaining_for(slot, green=True) <= 0:
            break
        if await suspended_until(entry.person_id) is not None:  # type: ignore[attr-defined]
            continue
        resident_id = await _account_of(entry.person_id)  # type: ignore[attr-defined]

        async def attempt(entry: WaitlistEntry = entry,
                          resident_id: int | None = resident_id) -> Appointment:
            async with in_transaction() as conn:
                appt, _person = await _book_locked(
                    person_id=entry.person_id,  # type: ignore[attr-defined]
                    slot=slot, item_code=entry.item_code,
                    booked_by=entry.joined_by_id,  # type: ignore[attr-defined]
                    on_behalf=entry.on_behalf, green=entry.green, resident_id=resident_id,
                    waitlist_entry_id=entry.id)
                await _queue_notice(appt.id, "promoted", using_db=conn)
                return appt

        try:
            appt = await _retrying(attempt)
        except _NotOffered:
            continue
        except AppError as exc:
            # Full for this person's pool, or they reached their limit: the next in line may
            # still fit; this one keeps waiting.
            log.info("waitlist entry not promoted", extra={"entry": entry.id,
                                                            "reason": exc.code.name})
            continue
        made.append(appt)
        await deskview.changed(entry.person_id)  # type: ignore[attr-defined]
    return made


# --- check-in ------------------------------------------------------------------------------


def _check_window(appt: Appointment) -> None:
    now = clock.now()
    early = timedelta(minutes=get_settings().appointment_check_in_early_minutes)
    if not appt.starts_at - early <= now <= appt.ends_at:
        raise AppError(ErrorCode.check_in_closed,
                       f"请在预约时段开始前{early.seconds // 60}分钟至时段结束之间签到")


async def _mark_checked_in(appt: Appointment, *, clerk_id: int | None = None) -> Appointment:
    """``clerk_id``: the clerk checking the resident in at the window, recorded as who served
    the visit (``served_by``, for 好差评); None for the resident's own check-in at the hall's
    QR, which records nobody until a clerk acts on it."""
    if appt.status == AppointmentStatus.checked_in:
        # A second scan of the same code is harmless. A clerk scanning a visit the resident
        # checked in by themself is the first clerk to serve it: recorded, once.
        if clerk_id is not None and appt.served_by_id is None:  # type: ignore[attr-defined]
            await _record_clerk(appt.id, clerk_id)
            await appt.refresh_from_db()
        return appt
    if appt.status != AppointmentStatus.booked:
        raise AppError(ErrorCode.appointment_not_active)
    _check_window(appt)
    async with in_transaction() as conn:
        # The clerk in the same statement as the check-in: no checked-in row without its
        # server when a clerk did it.
        done = await Appointment.filter(id=appt.id, status=AppointmentStatus.booked).update(
            status=AppointmentStatus.checked_in, checked_in_at=clock.now(),
            served_by_id=clerk_id)
        if not done:
            raise AppError(ErrorCode.appointment_not_active)
        # 好差评: the rating invitation is promised with the check-in it follows.
        await _queue_notice(appt.id, "rate", using_db=conn)
    await deskview.changed(appt.person_id)  # type: ignore[attr-defined]
    await appt.refresh_from_db()
    return appt


async def check_in_by_code(*, actor: Principal, code: str) -> Appointment:
    """Hall staff scan the QR code the resident shows."""
    if not actor.is_staff:
        raise forbidden()
    code = code.strip()
    appt = await Appointment.get_or_none(check_in_token=code).select_related(
        "hall", "person") if len(code) <= 32 else None
    # Staff check in the appointments of their own halls only; another hall's looks unknown.
    if appt is None or not (await scope_of(actor)).covers(
            hall_id=appt.hall_id, hall_code=appt.hall.code):  # type: ignore[attr-defined]
        raise not_found("预约")
    return await _mark_checked_in(appt, clerk_id=actor.user_id)


async def _record_clerk(appointment_id: int, clerk_id: int) -> None:
    """The first clerk to act on a self checked-in visit served it. Conditional on nobody
    recorded yet, so two clerks scanning at once record one; a rating made while the resident
    waited reaches the clerk in the same transaction (services/ratings.py)."""
    async with in_transaction() as conn:
        moved = await Appointment.filter(
            id=appointment_id, status=AppointmentStatus.checked_in, served_by_id=None,
        ).using_db(conn).update(served_by_id=clerk_id)
        if moved:
            await ratings.tie_appointment_rating(appointment_id, using_db=conn)


def hall_check_in_token(hall_code: str, day: date) -> str:
    """The code on the hall's check-in poster/screen; changes daily so a photo of it can't be
    used from home the next day."""
    key = get_settings().jwt_secret.encode()
    msg = f"appt-hall-check-in:{hall_code}:{day.isoformat()}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]


async def hall_code_for_today(*, actor: Principal, hall_code: str) -> tuple[Hall, str, date]:
    if not actor.is_staff:
        raise forbidden()
    hall = await hall_in_scope(actor, hall_code)
    today = clock.today()
    return hall, hall_check_in_token(hall.code, today), today


async def check_in_at_hall(*, actor: Principal, appointment_id: int, hall_code: str,
                           token: str) -> Appointment:
    """The resident scans the hall's code with the mini program."""
    appt = await access_appointment(actor, appointment_id, for_change=True)
    expected = hall_check_in_token(appt.hall.code, clock.today())
    if appt.hall.code != hall_code or not hmac.compare_digest(expected, token):
        raise AppError(ErrorCode.check_in_code_invalid, "签到码无效、已过期或不属于预约的大厅")
    return await _mark_checked_in(appt)


# --- notices and the sweep -----------------------------------------------------------------


async def _queue_notice(appointment_id: int, kind: str, *,
                        using_db: BaseDBAsyncClient | None) -> None:
    # Promised in the booking's own transaction (the outbox), not sent inline: the WeChat
    # round trip stays off the booking path, and no Redis restart can lose the notice.
    await outbox.add("appointments.notify", {"appointment_id": appointment_id, "kind": kind},
                     f"appt:{appointment_id}:{kind}", using_db=using_db)


_TEMPLATES = {"booked": "appointment_booked", "moved": "appointment_booked",
              "promoted": "waitlist_promoted", "remind": "appointment_reminder"}


async def _send(appt: Appointment, kind: str) -> None:
    booked_by: int = appt.booked_by_id  # type: ignore[attr-defined]
    hall: Hall = appt.hall
    names = await item_names({appt.item_code})
    item = names.get(appt.item_code, appt.item_code)
    when = clock.local(appt.starts_at).strftime("%Y-%m-%d %H:%M")
    data: dict[str, Any] = {
        "thing1": {"value": hall.name[:20]},
        "time2": {"value": when},
        "thing3": {"value": item[:20]},
    }
    template = _TEMPLATES[kind.split(":")[0]]
    page = f"pages/appointments/detail?id={appt.id}"
    if appt.resident_id is None:  # type: ignore[attr-defined]
        # Booked by a worker for someone without an account: the worker is who we can reach.
        person = await Person.get(id=appt.person_id)  # type: ignore[attr-defined]
        await notifications.notify(
            user_id=booked_by, template=template, data=data, dedup_key=f"appt:{appt.id}:{kind}",
            page=page, hall_code=hall.code,
            body=f"为{person.name_masked}预约：{hall.name} {when}，办理：{item}。"
                 "对方未注册小程序，请转告本人。")
        return
    # For someone a worker booked for, the worker hears how each notice went (relay_to).
    relay = booked_by if appt.on_behalf and booked_by != appt.resident_id else None  # type: ignore[attr-defined]
    await notifications.notify(user_id=appt.resident_id,  # type: ignore[attr-defined]
                               template=template, data=data,
                               dedup_key=f"appt:{appt.id}:{kind}", page=page, relay_to=relay,
                               # Appointments are scoped by hall only (no department).
                               hall_code=hall.code)


async def _invite_rating(appt: Appointment) -> None:
    names = await item_names({appt.item_code})
    item = names.get(appt.item_code, appt.item_code)
    await notifications.notify(
        user_id=appt.resident_id or appt.booked_by_id,  # type: ignore[attr-defined]
        template="rating_invite", data={"thing1": item[:20], "thing2": "请为本次办理评价"},
        dedup_key=f"rating_invite:appointment:{appt.id}",
        page=f"pages/ratings/new?appointment_id={appt.id}", hall_code=appt.hall.code,
        title="邀请您评价", body=f"您已签到办理“{item}”，欢迎对本次服务作出评价（好差评）。",
        category=MessageCategory.appointments)


@outbox.handler("appointments.notify")
async def _notify_job(payload: dict[str, Any]) -> None:
    # With its hall: every notice names it, and counts in the hall's figures.
    appt = await Appointment.get_or_none(id=payload["appointment_id"]).select_related("hall")
    kind = str(payload["kind"])
    if appt is None:
        return
    if kind == "rate":
        if appt.status == AppointmentStatus.checked_in:
            await _invite_rating(appt)
    elif appt.status == AppointmentStatus.booked:
        await _send(appt, kind)


async def mark_no_shows() -> int:
    now = clock.now()
    due = await Appointment.filter(status=AppointmentStatus.booked, ends_at__lt=now
                                   ).values_list("id", "person_id")
    if not due:
        return 0
    marked = await Appointment.filter(id__in=[i for i, _ in due],
                                      status=AppointmentStatus.booked).update(
        status=AppointmentStatus.no_show, no_show_at=now)
    await deskview.changed(*{pid for _, pid in due})
    return marked


async def send_reminders(*, batch: int = 500) -> int:
    """Day-before and hour-before reminders, promised in the outbox in the same transaction
    as the flag that keeps the scan small: a reminder is flagged iff it is promised. The dedup
    key (with the start time, so a rescheduled appointment is reminded again) keeps it from
    going twice even if two sweeps overlap."""
    now = clock.now()
    sent = 0
    hour = now + timedelta(hours=1)
    due_hour = await Appointment.filter(status=AppointmentStatus.booked, reminded_hour=False,
                                        starts_at__gt=now, starts_at__lte=hour).limit(batch)
    for appt in due_hour:
        async with in_transaction() as conn:
            await _queue_notice(appt.id, f"remind:hour:{_stamp(appt.starts_at)}", using_db=conn)
            await Appointment.filter(id=appt.id).using_db(conn).update(reminded_hour=True,
                                                                       reminded_day=True)
        sent += 1
    due_day = await Appointment.filter(status=AppointmentStatus.booked, reminded_day=False,
                                       starts_at__gt=hour,
                                       starts_at__lte=now + timedelta(days=1)).limit(batch)
    for appt in due_day:
        async with in_transaction() as conn:
            await _queue_notice(appt.id, f"remind:day:{_stamp(appt.starts_at)}", using_db=conn)
            await Appointment.filter(id=appt.id).using_db(conn).update(reminded_day=True)
        sent += 1
    return sent


async def expire_waitlist() -> int:
    ids = await WaitlistEntry.filter(status=WaitlistStatus.waiting,
                                     slot__starts_at__lte=clock.now()).values_list("id", flat=True)
    if not ids:
        return 0
    return await WaitlistEntry.filter(id__in=list(ids), status=WaitlistStatus.waiting).update(
        status=WaitlistStatus.expired, waiting=None)


async def retry_offers(*, limit: int = 100) -> int:
    """A worker that died between a cancellation and its offer leaves a free place and a
    waitlist; this finds them again."""
    slot_ids = await WaitlistEntry.filter(
        status=WaitlistStatus.waiting, slot__starts_at__gt=clock.now()
    ).distinct().limit(limit).values_list("slot_id", flat=True)
    made = 0
    for sid in set(slot_ids):
        made += len(await offer_waitlist(slot_id=int(sid)))  # type: ignore[call-overload]
    return made


@jobs.periodic("appointments.sweep", every_seconds=60)
async def sweep() -> None:
    await mark_no_shows()
    await expire_waitlist()
    await retry_offers()
    await send_reminders()
