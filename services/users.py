"""Accounts and roles: profile, role grants by admins, and bootstrapping the first admin."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Role, User, UserRole
from services import helpers, onbehalf
from services.auth import Principal, publish_roles_change
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.verification import require_verified


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id).select_related("person")
    if user is None:
        raise not_found("用户")
    return user


async def enterprises_represented(user_id: int) -> list[Enterprise]:
    """The enterprises this account acts for as 经办人 (shown on its own profile)."""
    agencies = await EnterpriseAgent.filter(user_id=user_id).select_related(
        "enterprise").order_by("id")
    return [a.enterprise for a in agencies]


async def list_users(*, actor: Principal, role: Role | None = None, cursor: int | None = None,
                     limit: int = 20) -> list[User]:
    """Accounts, newest first, with person and roles loaded, for staff. City-wide on purpose:
    the list shows masked data only (docs/organisation.md); unmasking goes through
    ``people.reveal``, which is scoped and audited. Returns up to ``limit + 1`` rows; the
    extra one tells the caller another page exists."""
    if not actor.is_staff:
        raise forbidden()
    qs = User.all().select_related("person").prefetch_related("roles").order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    if role is not None and role is not Role.resident:
        # Residents hold no stored role row: everyone is one, so the filter would be empty.
        qs = qs.filter(roles__role=role)
    return await qs.limit(limit + 1)


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
    return await publish_roles_change(user)


async def revoke_role(*, actor: Principal, user_id: int, role: str) -> list[str]:
    if not actor.has(Role.admin):
        raise forbidden()
    parsed = _grantable(role)
    if parsed is Role.admin and user_id == actor.user_id:
        # Keeps at least the acting admin: a city must not lock itself out by a mis-tap.
        raise AppError(ErrorCode.conflict, "不能撤销自己的管理员角色")
    user = await get_user(user_id)
    async with in_transaction():
        # The account row first: a resident's grant to this worker running meanwhile waits,
        # then finds the role gone (helpers.grant_proxy takes the same lock).
        await User.select_for_update().get(id=user_id)
        await UserRole.filter(user=user, role=parsed).delete()
        remaining = {str(r) for r in await UserRole.filter(user=user).values_list("role",
                                                                                  flat=True)}
        # In the same transaction as the role: a power must not outlive it by a crash.
        ended = await _end_powers(user_id, parsed, remaining)
    # Published first, at once: a token issued before now loses the role on its next request.
    roles = await publish_roles_change(user)
    await ended.after_commit()
    return roles


@dataclass
class _Ended:
    grids: list[tuple[str, str]] = field(default_factory=list)
    cases: list[int] = field(default_factory=list)

    async def after_commit(self) -> None:
        await onbehalf.after_worker_relations_ended(self.grids)
        await helpers.after_helper_powers_ended(self.cases)


async def _end_powers(user_id: int, role: Role, remaining: set[str]) -> _Ended:
    """Every stored relation that came with ``role``: grids and desk registrations of a
    community worker; proxy authorisations held, duty and open assignments of a proxy (once
    neither proxy role is left); the enterprises an agent acted for."""
    ended = _Ended()
    if role is Role.community_worker:
        ended.grids = await onbehalf.end_worker_relations(user_id)
    if role in helpers.HELPER_ROLES and remaining.isdisjoint(str(r) for r in
                                                             helpers.HELPER_ROLES):
        ended.cases = await helpers.end_helper_powers(user_id)
    if role is Role.enterprise_agent:
        await EnterpriseAgent.filter(user_id=user_id).delete()
    return ended


async def bootstrap_admin(*, openid: str) -> User:
    """Make the account with this openid an admin (creating it if it never logged in).
    Run from the command line by an operator; never reachable over HTTP."""
    user, _ = await User.get_or_create(openid=openid)
    await UserRole.get_or_create(user=user, role=Role.admin)
    return user
