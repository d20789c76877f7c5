"""Who may act for whom: the desk registrations that, with grid assignments (models.codes)
and the resident's proxy authorisations (models.cases), relate a worker to a person."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import Person, User


class DeskRegistration(Model):
    """A community worker typed in a person we had no record of (代预约 at the desk, the
    resident present with their ID card): that worker may keep booking for them. One row per
    person, because only whoever created the record registered them; ``ended_at`` is set when
    the worker loses the role, so a later re-grant brings no old relation back."""

    id = fields.BigIntField(primary_key=True)
    # One-to-one: the database itself refuses a second registrar (a unique FK is not
    # created as a unique index by Tortoise, which the MySQL race test caught).
    person: fields.OneToOneRelation[Person] = fields.OneToOneField(
        "models.Person", related_name=False, on_delete=fields.CASCADE
    )
    worker: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    registered_at = fields.DatetimeField(auto_now_add=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "desk_registrations"
