"""综窗 at the window (issue 12, front half): who owns a request (首问负责), materials accepted
missing (容缺受理), signed commitments (告知承诺制) and refusals (不予受理).

Kept beside ``models/cases.py`` rather than in it: the case row stays the state machine's, and
these are the window's records about a case."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.cases import Case
    from models.users import User


class CaseOwner(Model):
    """首问负责: the staff member accountable for a request, from the first staff member who
    received it until a recorded hand-over. History stays; the open row has ``until`` NULL."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="owners", on_delete=fields.CASCADE
    )
    staff: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="owned_cases", on_delete=fields.RESTRICT
    )
    # = case_id while this row is the current owner, NULL after: the unique index makes "one
    # owner at a time" a database fact even when two first actions race (MySQL and SQLite
    # both allow many NULLs in a unique index). Same device as HelperAssignment.
    active_case_id = fields.BigIntField(null=True, unique=True)
    since = fields.DatetimeField()
    until = fields.DatetimeField(null=True)
    # Set on the row a hand-over opens: who handed it over and why.
    handed_over_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    note = fields.CharField(max_length=500, default="")

    class Meta:
        table = "case_owners"


class ToleratedMaterial(Model):
    """容缺受理: a non-key material accepted missing, with the applicant's deadline."""

    id = fields.BigIntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="tolerated", on_delete=fields.CASCADE
    )
    material = fields.CharField(max_length=128)
    reason = fields.CharField(max_length=500, default="")
    supply_by = fields.DateField()
    accepted_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    supplied_at = fields.DatetimeField(null=True)
    received_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # The overdue sweep's mark: one alert per material, however often it runs.
    alerted_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_tolerated_materials"
        unique_together = (("case", "material"),)


class CommitmentCheck(StrEnum):
    pending = "pending"
    verified = "verified"  # 核查属实
    false = "false"  # 承诺不实: recorded against the case


class CaseCommitment(Model):
    """告知承诺制: the applicant's signed commitment in place of materials, and its 核查."""

    id = fields.BigIntField(primary_key=True)
    case: fields.OneToOneRelation[Case] = fields.OneToOneField(
        "models.Case", related_name="commitment", on_delete=fields.CASCADE
    )
    # {"materials": [...]} the commitment stands in for.
    materials: fields.JSONField[dict[str, Any]] = fields.JSONField()
    text = fields.TextField()
    # Who signed, as the clerk saw them sign: the person's masked name (the case names them).
    signer_masked = fields.CharField(max_length=64)
    signed_at = fields.DatetimeField()
    recorded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    check_due = fields.DateField(db_index=True)
    check_status = fields.CharEnumField(CommitmentCheck, max_length=16,
                                        default=CommitmentCheck.pending)
    checked_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    checked_at = fields.DatetimeField(null=True)
    finding = fields.CharField(max_length=500, default="")

    class Meta:
        table = "case_commitments"


class CaseRefusal(Model):
    """不予受理: the ground (one of the item's refusal grounds), its legal basis, who, when."""

    id = fields.BigIntField(primary_key=True)
    case: fields.OneToOneRelation[Case] = fields.OneToOneField(
        "models.Case", related_name="refusal", on_delete=fields.CASCADE
    )
    ground = fields.CharField(max_length=500)
    legal_basis = fields.TextField()
    note = fields.CharField(max_length=500, default="")
    refused_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    refused_at = fields.DatetimeField()

    class Meta:
        table = "case_refusals"


class WalkIn(Model):
    """A case a clerk opened for the person at the desk. ``appointment_id`` is unique, so one
    checked-in appointment opens one case however often the clerk presses the button."""

    id = fields.BigIntField(primary_key=True)
    case: fields.OneToOneRelation[Case] = fields.OneToOneField(
        "models.Case", related_name="walk_in", on_delete=fields.CASCADE
    )
    clerk: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT
    )
    appointment_id = fields.BigIntField(null=True, unique=True)
    # True when this intake created the person's record (a desk registration: the clerk saw
    # the ID card; the person had never been seen by the service before).
    registered_person = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "case_walk_ins"
