"""Accounts (a WeChat openid), their roles, the real-name person behind them, refresh tokens."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    resident = "resident"
    helper = "helper"
    community_worker = "community_worker"
    enterprise_agent = "enterprise_agent"
    staff = "staff"
    admin = "admin"


class IdentityLevel(StrEnum):
    """How the account's real-name person was proven (docs/foundation.md):
    face = WeChat 人脸核身 (实名 + 实人); desk = window staff saw the ID card in person;
    none = no person, or a binding from before either proof existed."""

    none = "none"
    desk = "desk"
    face = "face"


class User(Model):
    id = fields.BigIntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    unionid = fields.CharField(max_length=64, null=True)
    nickname = fields.CharField(max_length=64, default="")
    # Phone: encrypted, blind-indexed, and pre-masked so lists never need to decrypt.
    phone_enc = fields.CharField(max_length=255, null=True)
    phone_hash = fields.CharField(max_length=64, null=True, db_index=True)
    phone_masked = fields.CharField(max_length=16, null=True)
    person: fields.OneToOneNullableRelation[Person] = fields.OneToOneField(
        "models.Person", related_name="user", null=True, on_delete=fields.SET_NULL
    )
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)
    identity_level = fields.CharEnumField(IdentityLevel, max_length=8, default=IdentityLevel.none)
    identity_verified_at = fields.DatetimeField(null=True)

    roles: fields.ReverseRelation[UserRole]

    class Meta:
        table = "users"


class UserRole(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="roles", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=32)
    granted_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    granted_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user_roles"
        unique_together = (("user", "role"),)


class Person(Model):
    """A real-name natural person. May exist without an account: a community worker books
    for an elderly resident who has no phone."""

    id = fields.BigIntField(primary_key=True)
    name_enc = fields.CharField(max_length=255)
    name_masked = fields.CharField(max_length=32)
    id_number_enc = fields.CharField(max_length=255)
    id_number_hash = fields.CharField(max_length=64, unique=True)
    id_number_masked = fields.CharField(max_length=32)
    birth_date = fields.DateField()
    sex = fields.CharField(max_length=8)
    region_code = fields.CharField(max_length=6)
    phone_enc = fields.CharField(max_length=255, null=True)
    phone_hash = fields.CharField(max_length=64, null=True, db_index=True)
    phone_masked = fields.CharField(max_length=16, null=True)
    # Facts used by green channel and policy matching: disabled, veteran, graduate, ...
    tags: fields.JSONField[list[str]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    user: fields.BackwardOneToOneRelation[User]

    class Meta:
        table = "persons"


class RefreshToken(Model):
    """One row per issued refresh token. Rotation marks the old row used, and presenting a used
    token again means it was stolen or replayed, so the whole family is revoked."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="refresh_tokens", on_delete=fields.CASCADE
    )
    family = fields.CharField(max_length=36, db_index=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    issued_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refresh_tokens"
