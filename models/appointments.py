"""Appointments at a hall window: slot rules, materialised slots, bookings and waitlists.

Capacity is kept as two counters on the slot row (general pool and green-channel pool) that are
only ever changed by conditional ``UPDATE ... WHERE booked < capacity`` statements, so two
bookings can't both take the last place whatever the isolation level. The counters count every
appointment of the slot that is not cancelled.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from models.catalogue import WindowKind

if TYPE_CHECKING:
    from models.catalogue import Hall
    from models.users import Person, User


class AppointmentStatus(StrEnum):
    booked = "booked"
    checked_in = "checked_in"
    cancelled = "cancelled"
    no_show = "no_show"


class Pool(StrEnum):
    general = "general"
    green = "green"


class WaitlistStatus(StrEnum):
    waiting = "waiting"
    promoted = "promoted"
    left = "left"
    expired = "expired"


class SlotRule(Model):
    """What staff set per hall and window kind; slots are cut from the hall's opening hours."""

    id = fields.BigIntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="slot_rules", on_delete=fields.CASCADE
    )
    window_kind = fields.CharEnumField(WindowKind, max_length=32)
    slot_minutes = fields.IntField()
    capacity = fields.IntField()
    # Share (percent, rounded down to whole places) of each slot held for the green channel
    # until the day before the slot.
    green_percent = fields.IntField(default=0)
    book_ahead_days = fields.IntField(default=7)
    is_active = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "appointment_slot_rules"
        unique_together = (("hall", "window_kind"),)


class Slot(Model):
    id = fields.BigIntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="slots", on_delete=fields.CASCADE
    )
    window_kind = fields.CharEnumField(WindowKind, max_length=32)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    # Copied from the rule when the slot is cut, so a later rule change never strands
    # bookings already made against the old numbers.
    general_capacity = fields.IntField()
    green_hold = fields.IntField(default=0)
    general_booked = fields.IntField(default=0)
    green_booked = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "appointment_slots"
        # Lazy materialisation inserts with ignore-conflicts; this key makes it idempotent.
        unique_together = (("hall", "window_kind", "starts_at"),)

    @property
    def capacity(self) -> int:
        return self.general_capacity + self.green_hold

    @property
    def booked(self) -> int:
        return self.general_booked + self.green_booked


class Appointment(Model):
    id = fields.BigIntField(primary_key=True)
    # The account of the person it is for, when they have one.
    resident: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="appointments", null=True, on_delete=fields.SET_NULL
    )
    person: fields.ForeignKeyRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name="appointments", on_delete=fields.RESTRICT
    )
    booked_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="appointments_booked", on_delete=fields.RESTRICT
    )
    slot: fields.ForeignKeyRelation[Slot] = fields.ForeignKeyField(
        "models.Slot", related_name="appointments", on_delete=fields.RESTRICT
    )
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="appointments", on_delete=fields.RESTRICT
    )
    window_kind = fields.CharEnumField(WindowKind, max_length=32)
    item_code = fields.CharField(max_length=32)
    status = fields.CharEnumField(AppointmentStatus, max_length=16,
                                  default=AppointmentStatus.booked)
    pool = fields.CharEnumField(Pool, max_length=8)
    on_behalf = fields.BooleanField(default=False)
    # True while the appointment holds its place (not cancelled), NULL otherwise: with the
    # unique key below one person can hold one place per slot, while cancelled rows (NULL,
    # never equal in a unique index) don't block booking the slot again.
    holding = fields.BooleanField(null=True, default=True)
    starts_at = fields.DatetimeField(db_index=True)
    ends_at = fields.DatetimeField()
    # Random token behind the check-in QR code; looked up, never derived from the id.
    check_in_token = fields.CharField(max_length=32, unique=True)
    reminded_day = fields.BooleanField(default=False)
    reminded_hour = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    cancelled_at = fields.DatetimeField(null=True)
    checked_in_at = fields.DatetimeField(null=True)
    no_show_at = fields.DatetimeField(null=True)
    # The clerk who served the visit at the window: who checked the resident in by their code
    # (or, after a self check-in at the hall's QR, the first clerk who scanned it). NULL while
    # no clerk has acted; a rating of the appointment reaches whoever served it
    # (services/approval/served.py).
    served_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "appointments"
        unique_together = (("slot", "person", "holding"),)
        indexes = (("status", "ends_at"), ("person_id", "status"))


class WaitlistEntry(Model):
    id = fields.BigIntField(primary_key=True)
    slot: fields.ForeignKeyRelation[Slot] = fields.ForeignKeyField(
        "models.Slot", related_name="waitlist", on_delete=fields.CASCADE
    )
    person: fields.ForeignKeyRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name="waitlist_entries", on_delete=fields.CASCADE
    )
    joined_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="waitlist_joined", on_delete=fields.CASCADE
    )
    item_code = fields.CharField(max_length=32)
    green = fields.BooleanField(default=False)
    on_behalf = fields.BooleanField(default=False)
    status = fields.CharEnumField(WaitlistStatus, max_length=16, default=WaitlistStatus.waiting)
    # Same trick as Appointment.holding: one waiting entry per person and slot.
    waiting = fields.BooleanField(null=True, default=True)
    appointment: fields.ForeignKeyNullableRelation[Appointment] = fields.ForeignKeyField(
        "models.Appointment", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "appointment_waitlist"
        unique_together = (("slot", "person", "waiting"),)
