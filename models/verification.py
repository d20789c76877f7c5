"""Real-name + real-person attempts: one row per WeChat 人脸核身 session or desk check.

The name and ID number the attempt was for are kept encrypted (like ``Person``): the finish
step must recompute ``cert_hash`` from exactly what getVerifyId was given, and a row is also
the record of who tried to bind which ID, when, and how it ended.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.users import Person, User


class VerificationMethod(StrEnum):
    face = "face"  # WeChat 人脸核身 in the mini program
    desk = "desk"  # window staff saw the ID card in person


class VerificationStatus(StrEnum):
    pending = "pending"  # getVerifyId done, waiting for the user's face step and our query
    passed = "passed"  # bound
    failed = "failed"  # a terminal refusal; ``outcome`` says which (an ErrorCode name)


class IdentityVerification(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="identity_verifications", on_delete=fields.CASCADE
    )
    method = fields.CharEnumField(VerificationMethod, max_length=8)
    # Staff member who checked the card at the desk (desk attempts only).
    verified_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Our serial for WeChat (5-32 of [0-9A-Za-z_-], unique per appid) and WeChat's session id.
    out_seq_no = fields.CharField(max_length=32, unique=True)
    verify_id = fields.CharField(max_length=256, default="")
    cert_name_enc = fields.CharField(max_length=255)
    cert_no_enc = fields.CharField(max_length=255)
    cert_no_hash = fields.CharField(max_length=64, db_index=True)
    cert_no_masked = fields.CharField(max_length=32)
    status = fields.CharEnumField(VerificationStatus, max_length=8,
                                  default=VerificationStatus.pending)
    verify_ret = fields.IntField(null=True)
    outcome = fields.CharField(max_length=32, default="")
    person: fields.ForeignKeyNullableRelation[Person] = fields.ForeignKeyField(
        "models.Person", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # The account that held the person before this verification moved it here: the stored
    # notice that account reads, and what the notice sweep delivers.
    took_from: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    took_from_notified_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "identity_verifications"
