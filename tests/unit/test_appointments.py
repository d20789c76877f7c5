"""Booking rules: limits, on-behalf booking, cancel window, reschedule, no-show suspension,
reminders, waitlist offers and check-in."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from models.appointments import Appointment, AppointmentStatus, Slot, WaitlistStatus
from models.audit import AuditLog
from models.cases import ProxyScope
from models.notifications import Notification
from models.outbox import OutboxMessage
from models.users import Role, User
from services import appointments, helpers, jobs, notifications, outbox, people, waitlist
from services.errors import AppError, ErrorCode
from services.settings import get_settings
from tests.unit.test_appointments_common import (
    ITEM,
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

MON = date(2026, 9, 21)


async def _code(fn: Any, **kw: Any) -> ErrorCode:
    with pytest.raises(AppError) as e:
        await fn(**kw)
    return e.value.code


async def _counted(slot: Slot) -> tuple[int, int]:
    """(counter on the slot, appointments that hold a place in it)."""
    await slot.refresh_from_db()
    rows = await Appointment.filter(slot_id=slot.id).exclude(
        status=AppointmentStatus.cancelled).count()
    return slot.booked, rows


async def test_booking_needs_a_real_name_identity(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9))
    nobody = await account()
    assert await _code(appointments.book, actor=nobody, slot_id=slot.id,
                       item_code=ITEM) is ErrorCode.identity_required


async def test_item_must_match_the_slot_window(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), kind="real_estate")
    me = await resident()
    with pytest.raises(AppError) as e:
        await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)
    assert e.value.code is ErrorCode.item_not_offered


async def test_one_place_per_person_per_slot_and_active_limit(
        clk: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    await catalogue()
    monkeypatch.setattr(get_settings(), "appointment_max_active", 2)
    me = await resident()
    s1, s2, s3 = [await make_slot(at(MON, h)) for h in (9, 10, 11)]
    await appointments.book(actor=me, slot_id=s1.id, item_code=ITEM)
    assert await _code(appointments.book, actor=me, slot_id=s1.id,
                       item_code=ITEM) is ErrorCode.already_booked
    await appointments.book(actor=me, slot_id=s2.id, item_code=ITEM)
    err = await _code(appointments.book, actor=me, slot_id=s3.id, item_code=ITEM)
    assert err is ErrorCode.booking_limit_reached
    assert await _counted(s3) == (0, 0)
    # Cancelling one frees a booking for the person.
    first = await Appointment.get(slot_id=s1.id)
    await appointments.cancel(actor=me, appointment_id=first.id)
    await appointments.book(actor=me, slot_id=s3.id, item_code=ITEM)
    # And the same slot can be booked again after a cancellation.
    await appointments.cancel(actor=me, appointment_id=(await Appointment.get(slot_id=s2.id)).id)
    await appointments.book(actor=me, slot_id=s1.id, item_code=ITEM)
    assert await _counted(s1) == (1, 1)


async def test_past_and_unknown_slots(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    past = await make_slot(at(date(2026, 9, 18), 9))
    assert await _code(appointments.book, actor=me, slot_id=past.id,
                       item_code=ITEM) is ErrorCode.slot_not_bookable
    too_far = await make_slot(at(date(2026, 9, 30), 9))
    assert await _code(appointments.book, actor=me, slot_id=too_far.id,
                       item_code=ITEM) is ErrorCode.slot_not_bookable
    assert await _code(appointments.book, actor=me, slot_id=10**9,
                       item_code=ITEM) is ErrorCode.not_found


async def test_on_behalf_booking_for_a_person_without_account(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9))
    worker = await account(Role.community_worker)
    idn = id_number("19500101")
    appt = await appointments.book(
        actor=worker, slot_id=slot.id, item_code=ITEM,
        on_behalf_of=appointments.OnBehalf(name="王大爷", id_number=idn))
    person = await people.upsert_person(name="王大爷", id_number=idn)
    assert appt.person_id == person.id
    assert appt.resident_id is None and appt.on_behalf
    assert appt.booked_by_id == worker.user_id
    log = await AuditLog.get(subject_person_id=person.id)
    assert log.action == "appointment.book_on_behalf" and log.actor_id == worker.user_id
    # A wrong name for a known ID number is refused with the answer any refusal gets (no
    # hint that the number is registered under another name), nothing is booked.
    slot2 = await make_slot(at(MON, 10))
    with pytest.raises(AppError) as e:
        await appointments.book(actor=worker, slot_id=slot2.id, item_code=ITEM,
                                on_behalf_of=appointments.OnBehalf(name="王二", id_number=idn))
    assert e.value.code is ErrorCode.on_behalf_not_permitted
    assert await _counted(slot2) == (0, 0)


async def test_on_behalf_for_a_resident_with_account_shows_in_their_list_and_notifies(
        clk: Clock, fake_wechat: Any) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9))
    zhang = await resident("19410305", name="张建国")
    zhang_user = await User.get(id=zhang.user_id).select_related("person")
    await notifications.record_subscription(user_id=zhang.user_id,
                                            template="appointment_booked", accepted=True)
    worker = await account(Role.community_worker)
    # The relation: 张建国 lets this worker book for him.
    await helpers.grant_proxy(actor=zhang, helper_user_id=worker.user_id,
                              scopes=[ProxyScope.book], days=30)
    idn = await _plain_id(zhang_user.person.id)
    appt = await appointments.book(actor=worker, slot_id=slot.id, item_code=ITEM,
                                   on_behalf_of=appointments.OnBehalf(name="张建国",
                                                                      id_number=idn))
    assert appt.resident_id == zhang.user_id
    mine = await appointments.list_mine(actor=zhang)
    assert [a.id for a in mine] == [appt.id]
    assert [a.id for a in await appointments.list_mine(actor=worker)] == [appt.id]
    await outbox.dispatch_due()
    note = await Notification.get(dedup_key=f"appt:{appt.id}:booked")
    assert note.user_id == zhang.user_id and note.status == "sent"


async def _plain_id(person_id: int) -> str:
    from services import pii

    person = await people.Person.get(id=person_id)
    return pii.decrypt(person.id_number_enc, purpose=people.P_ID)


async def test_only_workers_book_on_behalf(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9))
    me = await resident()
    err = await _code(appointments.book, actor=me, slot_id=slot.id, item_code=ITEM,
                      on_behalf_of=appointments.OnBehalf(name="某某", id_number=id_number()))
    assert err is ErrorCode.forbidden


async def test_cancel_window_and_someone_elses_appointment(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9))
    me, other = await resident(), await resident()
    appt = await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)
    assert await _code(appointments.cancel, actor=other,
                       appointment_id=appt.id) is ErrorCode.not_found
    assert await _code(appointments.get, actor=other,
                       appointment_id=appt.id) is ErrorCode.not_found
    clk.set(at(MON, 8, 1))  # 59 minutes before: inside the 60-minute cut-off
    assert await _code(appointments.cancel, actor=me,
                       appointment_id=appt.id) is ErrorCode.cancel_too_late
    clk.set(at(MON, 7, 59))
    done = await appointments.cancel(actor=me, appointment_id=appt.id)
    assert done.status == AppointmentStatus.cancelled
    assert await _counted(slot) == (0, 0)
    assert await _code(appointments.cancel, actor=me,
                       appointment_id=appt.id) is ErrorCode.appointment_not_active


async def test_reschedule_takes_new_place_or_changes_nothing(clk: Clock) -> None:
    await catalogue()
    a_slot = await make_slot(at(MON, 9))
    b_slot = await make_slot(at(MON, 10), capacity=1)
    me, other = await resident(), await resident()
    appt = await appointments.book(actor=me, slot_id=a_slot.id, item_code=ITEM)
    moved = await appointments.reschedule(actor=me, appointment_id=appt.id, slot_id=b_slot.id)
    assert moved.id == appt.id and moved.starts_at == at(MON, 10)
    assert await _counted(a_slot) == (0, 0) and await _counted(b_slot) == (1, 1)
    # Back is possible; but the now-full b_slot refuses someone else and leaves them as they were.
    theirs = await appointments.book(actor=other, slot_id=a_slot.id, item_code=ITEM)
    err = await _code(appointments.reschedule, actor=other, appointment_id=theirs.id,
                      slot_id=b_slot.id)
    assert err is ErrorCode.slot_full
    still = await Appointment.get(id=theirs.id)
    assert still.slot_id == a_slot.id and still.status == AppointmentStatus.booked
    assert await _counted(a_slot) == (1, 1) and await _counted(b_slot) == (1, 1)
    assert await _code(appointments.reschedule, actor=other, appointment_id=appt.id,
                       slot_id=a_slot.id) is ErrorCode.not_found


async def test_repeated_no_shows_suspend_booking(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    for h in (9, 10, 11):
        s = await make_slot(at(MON, h))
        await appointments.book(actor=me, slot_id=s.id, item_code=ITEM)
    clk.set(at(MON, 12, 5))
    assert await appointments.mark_no_shows() == 3
    later = await make_slot(at(date(2026, 9, 24), 9))
    with pytest.raises(AppError) as e:
        await appointments.book(actor=me, slot_id=later.id, item_code=ITEM)
    assert e.value.code is ErrorCode.booking_suspended
    assert "2026年10月21日" in e.value.message  # 30 days after the last missed slot ended
    assert e.value.extra["suspended_until"].startswith("2026-10-21T11:30:00+08:00")
    assert e.value.status == 403
    clk.set(at(date(2026, 10, 21), 11, 31))
    again = await make_slot(at(date(2026, 10, 22), 9))
    await appointments.book(actor=me, slot_id=again.id, item_code=ITEM)


async def test_reminders_sent_once_each(clk: Clock, fake_wechat: Any) -> None:
    await catalogue()
    me = await resident()
    await notifications.record_subscription(user_id=me.user_id, template="appointment_reminder",
                                            accepted=True, long_term=True)
    slot = await make_slot(at(MON, 9))
    appt = await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)
    clk.set(at(date(2026, 9, 20), 8, 0))  # 25 h before: nothing yet
    assert await appointments.send_reminders() == 0
    clk.set(at(date(2026, 9, 20), 9, 30))
    assert await appointments.send_reminders() == 1
    assert await appointments.send_reminders() == 0
    # The flag lost (an operator reset it): the dedup key holds, nothing is promised twice.
    await Appointment.filter(id=appt.id).update(reminded_day=False)
    await appointments.send_reminders()
    clk.set(at(MON, 8, 10))
    await jobs.run_periodic_once(force=True)
    await jobs.run_periodic_once(force=True)
    await outbox.dispatch_due()
    await outbox.dispatch_due()
    sent = await Notification.filter(user_id=me.user_id, template="appointment_reminder",
                                     status="sent").values_list("dedup_key", flat=True)
    assert sorted(str(k) for k in sent) == [f"appt:{appt.id}:remind:day:202609210900",
                            f"appt:{appt.id}:remind:hour:202609210900"]
    assert len([m for m in fake_wechat.sent_messages
                if m.get("template_id") == "tmpl-appt-reminder"]) == 2


async def test_cancelled_appointments_get_no_reminder(clk: Clock, fake_wechat: Any) -> None:
    await catalogue()
    me = await resident()
    slot = await make_slot(at(MON, 9))
    appt = await appointments.book(actor=me, slot_id=slot.id, item_code=ITEM)
    await appointments.cancel(actor=me, appointment_id=appt.id)
    clk.set(at(MON, 8, 10))
    assert await appointments.send_reminders() == 0


async def test_waitlist_promotion_on_cancel(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=1)
    holder, first, second = [await resident() for _ in range(3)]
    appt = await appointments.book(actor=holder, slot_id=slot.id, item_code=ITEM)
    e1 = await waitlist.join(actor=first, slot_id=slot.id, item_code=ITEM)
    e2 = await waitlist.join(actor=second, slot_id=slot.id, item_code=ITEM)
    assert await waitlist.position(e2) == 2
    assert await _code(waitlist.join, actor=first, slot_id=slot.id,
                       item_code=ITEM) is ErrorCode.already_waitlisted
    assert await _code(waitlist.leave, actor=second, entry_id=e1.id) is ErrorCode.not_found
    await appointments.cancel(actor=holder, appointment_id=appt.id)
    await e1.refresh_from_db()
    await e2.refresh_from_db()
    assert e1.status == WaitlistStatus.promoted and e2.status == WaitlistStatus.waiting
    promoted = await Appointment.get(id=e1.appointment_id)
    assert promoted.resident_id == first.user_id
    assert await _counted(slot) == (1, 1)
    assert await OutboxMessage.exists(dedup_key=f"appt:{promoted.id}:promoted")
    # Joining a slot with room is refused: book it instead.
    roomy = await make_slot(at(MON, 10))
    assert await _code(waitlist.join, actor=second, slot_id=roomy.id,
                       item_code=ITEM) is ErrorCode.slot_available
    left = await waitlist.leave(actor=second, entry_id=e2.id)
    assert left.status == WaitlistStatus.left


async def test_waitlist_expires_when_the_slot_starts(clk: Clock) -> None:
    await catalogue()
    slot = await make_slot(at(MON, 9), capacity=1)
    a, b = await resident(), await resident()
    await appointments.book(actor=a, slot_id=slot.id, item_code=ITEM)
    entry = await waitlist.join(actor=b, slot_id=slot.id, item_code=ITEM)
    clk.set(at(MON, 9, 1))
    await appointments.sweep()
    await entry.refresh_from_db()
    assert entry.status == WaitlistStatus.expired


async def test_check_in_by_staff_code_and_by_hall_code(clk: Clock) -> None:
    await catalogue()
    me = await resident()
    staff = await account(Role.staff)
    s1, s2 = await make_slot(at(MON, 9)), await make_slot(at(MON, 10))
    a1 = await appointments.book(actor=me, slot_id=s1.id, item_code=ITEM)
    a2 = await appointments.book(actor=me, slot_id=s2.id, item_code=ITEM)
    assert await _code(appointments.check_in_by_code, actor=me,
                       code=a1.check_in_token) is ErrorCode.forbidden
    assert await _code(appointments.check_in_by_code, actor=staff,
                       code=a1.check_in_token) is ErrorCode.check_in_closed  # days early
    clk.set(at(MON, 8, 30))
    done = await appointments.check_in_by_code(actor=staff, code=a1.check_in_token)
    assert done.status == AppointmentStatus.checked_in and done.checked_in_at is not None
    assert await _code(appointments.check_in_by_code, actor=staff,
                       code="nope") is ErrorCode.not_found
    # The resident scans the hall's code of the day.
    clk.set(at(MON, 9, 15))
    _, token, _ = await appointments.hall_code_for_today(actor=staff, hall_code="H-QY-000")
    assert await _code(appointments.check_in_at_hall, actor=me, appointment_id=a2.id,
                       hall_code="H-QY-000", token="0" * 16) is ErrorCode.check_in_code_invalid
    assert await _code(appointments.check_in_at_hall, actor=me, appointment_id=a2.id,
                       hall_code="H-XF-000", token=token) is ErrorCode.check_in_code_invalid
    yesterday = appointments.hall_check_in_token("H-QY-000", MON - timedelta(days=1))
    assert await _code(appointments.check_in_at_hall, actor=me, appointment_id=a2.id,
                       hall_code="H-QY-000", token=yesterday) is ErrorCode.check_in_code_invalid
    done2 = await appointments.check_in_at_hall(actor=me, appointment_id=a2.id,
                                                hall_code="H-QY-000", token=token)
    assert done2.status == AppointmentStatus.checked_in
    # Checked-in appointments are not no-shows.
    clk.set(at(MON, 18))
    assert await appointments.mark_no_shows() == 0


async def test_overlapping_sweeps_send_each_reminder_once(clk: Clock, fake_wechat: Any) -> None:
    """Several workers, each running the sweep at the same moment (no Redis tick claim)."""
    import asyncio

    await catalogue()
    people_ = [await resident() for _ in range(5)]
    for p in people_:
        await notifications.record_subscription(user_id=p.user_id,
                                                template="appointment_reminder",
                                                accepted=True, long_term=True)
        s = await make_slot(at(MON, 9, people_.index(p)))
        await appointments.book(actor=p, slot_id=s.id, item_code=ITEM)
    clk.set(at(date(2026, 9, 20), 9, 30))
    await asyncio.gather(*[appointments.send_reminders() for _ in range(4)])
    await asyncio.gather(*[outbox.dispatch_due() for _ in range(4)])
    assert await Notification.filter(template="appointment_reminder").count() == 5
    assert len([m for m in fake_wechat.sent_messages
                if m.get("template_id") == "tmpl-appt-reminder"]) == 5


async def test_only_a_booking_for_today_bumps_the_desk_view(clk: Clock) -> None:
    """The staff desk view (cached per person and day, services/deskview.py) shows today's
    appointments: a booking for today must make the next scan read it afresh; one for
    another day leaves the cached view alone (that view doesn't show it), which saves the
    rush — bookings days ahead — a Redis round trip each."""
    from services import cache, clock, deskview

    await catalogue()
    me = await resident()
    person_id = (await User.get(id=me.user_id)).person_id
    assert person_id is not None

    async def generation() -> object:
        return await cache.redis().get(deskview.gen_key(person_id))

    before = await generation()
    await appointments.book(actor=me, slot_id=(await make_slot(at(MON, 9))).id, item_code=ITEM)
    assert await generation() == before
    today = clock.today()
    later = await make_slot(at(today, clk.at.hour + 2))
    await appointments.book(actor=me, slot_id=later.id, item_code=ITEM)
    assert await generation() != before
    view = await deskview.load(person_id=person_id, now=clock.now())
    assert [a["starts_at"] for a in view["appointments_today"]] == [
        clock.local(later.starts_at).isoformat()]
