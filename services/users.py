"""Accounts and roles: profile, role grants by admins, and bootstrapping the first admin."""

from __future__ import annotations

import contextlib

from tortoise.exceptions import IntegrityError

from models.users import Role, User, UserRole
from services.auth import Principal, roles_of
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.verification import require_verified


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id).select_related("person")
    if user is None:
        raise not_found("用户")
    return user


def _grantable(role: str) -> Role:
    try:
        parsed = Role(role)
    except ValueError as exc:
        raise AppError(ErrorCode.validation_failed, fields={"role": "未知角色"}) from exc
    if parsed is Role.resident:
        raise AppError(ErrorCode.validation_failed, fields={"role": "居民角色无需授予"})
    return parsed


async def grant_role(*, actor: Principal, user_id: int, role: str) -> list[str]:
    if not actor.has(Role.admin):
        raise forbidden()
    parsed = _grantable(role)
    user = await get_user(user_id)
    if parsed is Role.enterprise_agent:
        # An agent acts for a company under a real person's name: that person must be proven.
        await require_verified(user.id)
    # A concurrent grant of the same role loses the insert race; the outcome is the same.
    with contextlib.suppress(IntegrityError):
        await UserRole.get_or_create(user=user, role=parsed,
                                     defaults={"granted_by_id": actor.user_id})
    return await roles_of(user)


async def revoke_role(*, actor: Principal, user_id: int, role: str) -> list[str]:
    if not actor.has(Role.admin):
        raise forbidden()
    parsed = _grantable(role)
    if parsed is Role.admin and user_id == actor.user_id:
        # Keeps at least the acting admin: a city must not lock itself out by a mis-tap.
        raise AppError(ErrorCode.conflict, "不能撤销自己的管理员角色")
    user = await get_user(user_id)
    await UserRole.filter(user=user, role=parsed).delete()
    return await roles_of(user)


async def bootstrap_admin(*, openid: str) -> User:
    """Make the account with this openid an admin (creating it if it never logged in).
    Run from the command line by an operator; never reachable over HTTP."""
    user, _ = await User.get_or_create(openid=openid)
    await UserRole.get_or_create(user=user, role=Role.admin)
    return user
