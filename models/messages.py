"""站内消息: every notice the service sends a person, kept for them whatever WeChat did.

One row per notice and recipient (``dedup_key`` is the notice's own key, unique), written in the
same transaction as the delivery record (``models.notifications.Notification``), so a notice is
in the centre before anything is attempted outside. ``SmsQuota`` counts SMS fallbacks per
person and day; its conditional increment is what holds the daily limit under concurrency.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import User


class MessageCategory(StrEnum):
    appointments = "appointments"
    cases = "cases"
    policies = "policies"
    complaints = "complaints"
    helper_offers = "helper_offers"


class Message(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="messages", on_delete=fields.CASCADE
    )
    category = fields.CharEnumField(MessageCategory, max_length=16)
    # Our template name (appointment_booked, helper_offered, ...): says what kind of notice.
    template = fields.CharField(max_length=64)
    title = fields.CharField(max_length=64)
    body = fields.CharField(max_length=500)
    page = fields.CharField(max_length=255, default="")
    # An API path the notice can be acted on with (a helper accepts an offer from it).
    action_path = fields.CharField(max_length=255, default="")
    dedup_key = fields.CharField(max_length=191, unique=True)
    read_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "messages"
        # The centre's list: newest first per user, optionally per category / unread.
        indexes = (("user_id", "category", "id"), ("user_id", "read_at"))


class SmsQuota(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    day = fields.DateField()
    count = fields.IntField(default=0)

    class Meta:
        table = "sms_quotas"
        unique_together = (("user", "day"),)
