"""政策推送: policies staff publish for an audience, with the criteria that match residents
or enterprises to them."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import User


class Audience(StrEnum):
    person = "person"
    enterprise = "enterprise"


class PolicyStatus(StrEnum):
    draft = "draft"
    published = "published"
    withdrawn = "withdrawn"


class Policy(Model):
    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    title = fields.CharField(max_length=128)
    department = fields.CharField(max_length=64, default="")
    theme = fields.CharField(max_length=32, default="", db_index=True)
    audience = fields.CharEnumField(Audience, max_length=16)
    # {"min_age": 80} / {"tags": ["disabled"]} / {"size": [...], "industry": [...]} ...;
    # always an object, validated by services.policies.Criteria.
    criteria: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    summary = fields.TextField(default="")
    url = fields.CharField(max_length=255, default="")
    status = fields.CharEnumField(PolicyStatus, max_length=16, default=PolicyStatus.draft)
    published_at = fields.DatetimeField(null=True)
    created_by_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "policies"


class PolicyThemeMute(Model):
    """A user who wants no pushes about one policy theme (养老服务, 就业创业, …) while still
    receiving the others; muting the whole template is ``SubscriptionBalance.muted``."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="muted_policy_themes", on_delete=fields.CASCADE
    )
    theme = fields.CharField(max_length=32)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "policy_theme_mutes"
        unique_together = (("user", "theme"),)
