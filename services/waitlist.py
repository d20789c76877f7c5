"""Waitlists on full slots. Places reach them through ``appointments.offer_waitlist``."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models.appointments import Appointment, WaitlistEntry, WaitlistStatus
from services import appointments, clock, slots, verification
from services.appointments import OnBehalf
from services.auth import Principal
from services.errors import AppError, ErrorCode, not_found


async def join(*, actor: Principal, slot_id: int, item_code: str,
               on_behalf_of: OnBehalf | None = None) -> WaitlistEntry:
    person = await appointments.resolve_person(actor, on_behalf_of)
    slot = await appointments._bookable_slot(slot_id)
    await appointments._item_for(slot, item_code)
    await appointments._check_not_suspended(person.id)
    by_worker = on_behalf_of is not None
    green = slots.is_green(person, on=clock.local(slot.starts_at).date(), by_worker=by_worker)
    if slots.remaining_for(slot, green=green) > 0:
        raise AppError(ErrorCode.slot_available)
    if await Appointment.filter(slot_id=slot.id, person_id=person.id, holding=True).exists():
        raise AppError(ErrorCode.already_booked)
    try:
        entry = await WaitlistEntry.create(slot_id=slot.id, person_id=person.id,
                                           joined_by_id=actor.user_id, item_code=item_code,
                                           green=green, on_behalf=by_worker)
    except IntegrityError as exc:
        raise AppError(ErrorCode.already_waitlisted) from exc
    # A place may have come free between the check above and the insert.
    await appointments.offer_waitlist(slot_id=slot.id)
    await entry.refresh_from_db()
    return await _loaded(entry)


async def _loaded(entry: WaitlistEntry) -> WaitlistEntry:
    """What every answer about an entry shows: the slot, its hall and the person (masked)."""
    await entry.fetch_related("slot", "slot__hall", "person")
    return entry


async def _visible(actor: Principal, entry: WaitlistEntry) -> bool:
    if entry.joined_by_id == actor.user_id:  # type: ignore[attr-defined]
        return True
    mine = await verification.verified_person_of(actor.user_id)
    return mine is not None and mine.id == entry.person_id  # type: ignore[attr-defined]


async def leave(*, actor: Principal, entry_id: int) -> WaitlistEntry:
    entry = await WaitlistEntry.get_or_none(id=entry_id)
    if entry is None or not await _visible(actor, entry):
        raise not_found("候补")
    left = await WaitlistEntry.filter(id=entry.id, status=WaitlistStatus.waiting).update(
        status=WaitlistStatus.left, waiting=None)
    if not left:
        raise AppError(ErrorCode.conflict, "该候补已结束，无法退出")
    await entry.refresh_from_db()
    return await _loaded(entry)


async def list_mine(*, actor: Principal) -> list[WaitlistEntry]:
    mine = await verification.verified_person_of(actor.user_id)
    cond = Q(joined_by_id=actor.user_id)
    if mine is not None:
        cond |= Q(person_id=mine.id)
    rows: list[WaitlistEntry] = await WaitlistEntry.filter(cond).select_related(
        "slot", "slot__hall", "person").order_by("-id").limit(50)
    return rows


async def position(entry: WaitlistEntry) -> int | None:
    if entry.status != WaitlistStatus.waiting:
        return None
    ahead = await WaitlistEntry.filter(slot_id=entry.slot_id,  # type: ignore[attr-defined]
                                       status=WaitlistStatus.waiting, id__lt=entry.id).count()
    return ahead + 1

