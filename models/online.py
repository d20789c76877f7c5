"""全程网办: application forms as data, drafts, uploaded files in object storage, the materials a
case carries (uploaded, reused or taken from an electronic licence) and the deletion log."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.cases import Case, SupplementRequest
    from models.codes import ElectronicLicence
    from models.enterprises import Enterprise
    from models.users import User


class FormDefinition(Model):
    """One version of the application form of an item or a bundle (``target_code``). Versions
    are never edited: staff saving a form writes the next version, so a case can always show
    the form it was filled against."""

    id = fields.BigIntField(primary_key=True)
    target_code = fields.CharField(max_length=32, db_index=True)
    version = fields.IntField()
    title = fields.CharField(max_length=128, default="")
    # {"fields": [{"key","label","type","required","choices","prefill",...}]}
    schema: fields.JSONField[dict[str, Any]] = fields.JSONField()
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "online_forms"
        unique_together = (("target_code", "version"),)


class UploadStatus(StrEnum):
    stored = "stored"
    deleted = "deleted"


class Upload(Model):
    """A file a user uploaded, re-encoded and kept in object storage under ``storage_key``."""

    id = fields.BigIntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    storage_key = fields.CharField(max_length=128, unique=True)
    thumb_key = fields.CharField(max_length=128, null=True)
    content_type = fields.CharField(max_length=32)
    size = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)
    original_name = fields.CharField(max_length=128, default="")
    status = fields.CharEnumField(UploadStatus, max_length=16, default=UploadStatus.stored)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "online_uploads"


class ApplicationDraft(Model):
    """An online application being filled in. The form is pinned at creation (``form_fields``
    and ``form_versions``), so the submission validates against the form the resident saw."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    applicant: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    enterprise: fields.ForeignKeyNullableRelation[Enterprise] = fields.ForeignKeyField(
        "models.Enterprise", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    item_code = fields.CharField(max_length=32, null=True)
    bundle_code = fields.CharField(max_length=32, null=True)
    hall_code = fields.CharField(max_length=32)
    title = fields.CharField(max_length=128, default="")
    # {"fields": [...]} as merged for this draft; {"versions": {"MZ-004": 2}}.
    form_fields: fields.JSONField[dict[str, Any]] = fields.JSONField()
    form_versions: fields.JSONField[dict[str, Any]] = fields.JSONField()
    # The values hold names, ID numbers and phones: encrypted as one JSON blob (services/pii).
    values_enc = fields.TextField()
    case: fields.OneToOneNullableRelation[Case] = fields.OneToOneField(
        "models.Case", related_name="online_draft", null=True, on_delete=fields.SET_NULL
    )
    submitted_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True, db_index=True)

    class Meta:
        table = "online_drafts"


class MaterialSource(StrEnum):
    upload = "upload"
    reuse = "reuse"  # an accepted material of an earlier case (免提交)
    licence = "licence"  # an electronic licence the service already holds


class MaterialStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"


class CaseMaterial(Model):
    """One material of an application: on the draft until submission, then on the case."""

    id = fields.BigIntField(primary_key=True)
    draft: fields.ForeignKeyNullableRelation[ApplicationDraft] = fields.ForeignKeyField(
        "models.ApplicationDraft", related_name="materials", null=True,
        on_delete=fields.CASCADE,
    )
    case: fields.ForeignKeyNullableRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="online_materials", null=True, on_delete=fields.CASCADE
    )
    # The applicant whose material this is (reuse offers are per applicant).
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    source = fields.CharEnumField(MaterialSource, max_length=16)
    upload: fields.ForeignKeyNullableRelation[Upload] = fields.ForeignKeyField(
        "models.Upload", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reused_from: fields.ForeignKeyNullableRelation[CaseMaterial] = fields.ForeignKeyField(
        "models.CaseMaterial", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    licence: fields.ForeignKeyNullableRelation[ElectronicLicence] = fields.ForeignKeyField(
        "models.ElectronicLicence", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Set when this material answered a 一次性告知.
    supplement: fields.ForeignKeyNullableRelation[SupplementRequest] = fields.ForeignKeyField(
        "models.SupplementRequest", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharEnumField(MaterialStatus, max_length=16, default=MaterialStatus.pending)
    reason = fields.CharField(max_length=255, default="")
    reviewed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reviewed_at = fields.DatetimeField(null=True)
    # Accepted materials may be offered for reuse until this date.
    valid_until = fields.DateField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "online_case_materials"
        indexes = (("owner_id", "name", "status"),)


class UploadDeletion(Model):
    """Why and when an upload's bytes were deleted (by its owner or by the retention sweep)."""

    id = fields.BigIntField(primary_key=True)
    upload_id_ref = fields.BigIntField(db_index=True)
    owner_id_ref = fields.BigIntField()
    storage_key = fields.CharField(max_length=128)
    reason = fields.CharField(max_length=32)  # owner | abandoned_draft | orphan
    by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "online_upload_deletions"
