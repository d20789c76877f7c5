"""一码通: long-lived codes (enterprise, door plate), door plates, grids and households, electronic
licences, and the scan log. Person codes are short-lived and live in Redis only."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.enterprises import Enterprise
    from models.users import Person, User


class CodeKind(StrEnum):
    person = "person"
    enterprise = "enterprise"
    doorplate = "doorplate"


class DoorPlate(Model):
    """A 门楼牌 (house-number plate). Coordinates GCJ-02."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    county = fields.CharField(max_length=32)
    street = fields.CharField(max_length=64)
    community = fields.CharField(max_length=64, db_index=True)
    address = fields.CharField(max_length=255)
    lat = fields.FloatField()
    lng = fields.FloatField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "doorplates"


class GridAssignment(Model):
    """The community worker responsible for a community's grid. ``contact_phone`` is a duty
    phone published on purpose (residents scanning a plate should be able to call it), unlike
    the worker's personal phone, which stays encrypted on the account."""

    id = fields.BigIntField(primary_key=True)
    county = fields.CharField(max_length=32)
    community = fields.CharField(max_length=64, db_index=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    contact_name = fields.CharField(max_length=32)
    contact_phone = fields.CharField(max_length=32)
    is_active = fields.BooleanField(default=True)
    assigned_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "grid_assignments"
        unique_together = (("county", "community", "user"),)


class Household(Model):
    """A person registered as living at a door plate."""

    id = fields.BigIntField(primary_key=True)
    doorplate: fields.ForeignKeyRelation[DoorPlate] = fields.ForeignKeyField(
        "models.DoorPlate", related_name="households", on_delete=fields.CASCADE
    )
    person: fields.ForeignKeyRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, on_delete=fields.CASCADE
    )
    relation = fields.CharField(max_length=16, default="")  # 户主 / 配偶 / 子女 ...
    registered_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "households"
        unique_together = (("doorplate", "person"),)


class IssuedCode(Model):
    """A long-lived code. The token is looked up by its hash; it is also kept encrypted so
    staff can print the same plate again without re-issuing (re-issuing voids the old plate).
    ``active_key`` is ``kind:subject`` while active and NULL once revoked, so the database
    itself refuses a second active code for the same subject."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharEnumField(CodeKind, max_length=16)
    token_hash = fields.CharField(max_length=64, unique=True)
    token_enc = fields.CharField(max_length=255)
    active_key = fields.CharField(max_length=48, null=True, unique=True)
    enterprise: fields.ForeignKeyNullableRelation[Enterprise] = fields.ForeignKeyField(
        "models.Enterprise", related_name=False, null=True, on_delete=fields.CASCADE
    )
    doorplate: fields.ForeignKeyNullableRelation[DoorPlate] = fields.ForeignKeyField(
        "models.DoorPlate", related_name=False, null=True, on_delete=fields.CASCADE
    )
    issued_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    issued_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)
    revoked_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "issued_codes"


class ElectronicLicence(Model):
    """电子证照 held by a person or an enterprise. The number is stored masked only: the scan
    view never needs it in full, and the issuing system stays the source of truth."""

    id = fields.BigIntField(primary_key=True)
    person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.CASCADE
    )
    enterprise: fields.ForeignKeyNullableRelation[Enterprise] = fields.ForeignKeyField(
        "models.Enterprise", related_name=False, null=True, on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=32)  # disability_cert, marriage_cert, business_licence...
    title = fields.CharField(max_length=64)
    number_masked = fields.CharField(max_length=64)
    issuer = fields.CharField(max_length=64)
    issued_on = fields.DateField()
    valid_until = fields.DateField(null=True)
    # Enterprise licences only: shown to anyone scanning the enterprise code.
    is_public = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "electronic_licences"
        unique_together = (("person", "kind"), ("enterprise", "kind"))


class ScanLog(Model):
    """One scan: who, which code, when, what was shown. ``uid`` makes the buffered flush
    idempotent (a retried batch inserts nothing twice)."""

    id = fields.BigIntField(primary_key=True)
    uid = fields.CharField(max_length=32, unique=True)
    scanner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    scanner_roles: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # Where the scanner acts: a hall code for staff, a community for a grid worker.
    scanner_org = fields.CharField(max_length=128, default="")
    kind = fields.CharField(max_length=16)
    code_ref = fields.CharField(max_length=64, default="")
    subject_person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    enterprise_id_ref = fields.BigIntField(null=True)
    doorplate_id_ref = fields.BigIntField(null=True)
    outcome = fields.CharField(max_length=16)  # ok / forbidden / expired / revoked / invalid
    shown: fields.JSONField[list[str]] = fields.JSONField(default=list)
    at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "scan_logs"
