"""Who read or changed personal data, whose, what, why and when. Append-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import Person, User


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    actor_roles: fields.JSONField[list[str]] = fields.JSONField(default=list)
    subject_person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    action = fields.CharField(max_length=64)
    # Which fields were shown unmasked, e.g. ["id_number", "phone"].
    fields_read: fields.JSONField[list[str]] = fields.JSONField(default=list)
    reason = fields.CharField(max_length=255)
    request_id = fields.CharField(max_length=64, default="")
    at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_logs"
