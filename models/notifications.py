"""Subscribe-message balances and the record of every send attempt.

``dedup_key`` is unique: a policy push, a reminder or a status update is written once per
user whatever retries or parallel workers do, and the row says how the send went.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import User


class SubscriptionBalance(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="subscriptions", on_delete=fields.CASCADE
    )
    template = fields.CharField(max_length=64)
    # One-time subscriptions grant one message per acceptance; long-term ones don't run out.
    balance = fields.IntField(default=0)
    long_term = fields.BooleanField(default=False)
    # A user may switch a theme off without revoking the WeChat grant.
    muted = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscription_balances"
        unique_together = (("user", "template"),)


class Notification(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    template = fields.CharField(max_length=64)
    dedup_key = fields.CharField(max_length=191, unique=True)
    data: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    page = fields.CharField(max_length=255, default="")
    # pending -> sending (claimed by deliver) -> sent | skipped (not subscribed, no balance,
    # muted) | failed (WeChat refused or unreachable)
    status = fields.CharField(max_length=16, default="pending")
    detail = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    # SMS fallback for notices that matter: "" (not tried) | sent | failed | limited (daily
    # limit reached) | no_phone | muted. The detail says what the provider answered.
    sms_status = fields.CharField(max_length=16, default="")
    sms_detail = fields.CharField(max_length=255, default="")
    # The community worker who booked for this person: told what reached them and what didn't.
    relay_to: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Where the notice's business is: the hall and department of the case, appointment,
    # report or rating it is about (snapshots, like a rating's), so the delivery figures filter
    # by data scope as every staff figure does. "" for a notice about no hall (an identity
    # change; a policy push, which carries only its department): the city's.
    hall_code = fields.CharField(max_length=32, default="")
    department = fields.CharField(max_length=64, default="")

    class Meta:
        table = "notifications"
