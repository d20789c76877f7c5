"""Enterprises (by 统一社会信用代码) and the users authorised to act for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import User


class Enterprise(Model):
    id = fields.BigIntField(primary_key=True)
    uscc = fields.CharField(max_length=18, unique=True)
    name = fields.CharField(max_length=128)
    industry = fields.CharField(max_length=32, default="")
    size = fields.CharField(max_length=16, default="")
    county = fields.CharField(max_length=32, default="")
    tags: fields.JSONField[list[str]] = fields.JSONField(default=list)
    layoff_rate = fields.FloatField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "enterprises"


class EnterpriseAgent(Model):
    id = fields.BigIntField(primary_key=True)
    enterprise: fields.ForeignKeyRelation[Enterprise] = fields.ForeignKeyField(
        "models.Enterprise", related_name="agents", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="agencies", on_delete=fields.CASCADE
    )
    granted_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "enterprise_agents"
        unique_together = (("enterprise", "user"),)
