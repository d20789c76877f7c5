"""WeChat login, access tokens (JWT) and rotating refresh tokens.

Access tokens are short-lived HS256 JWTs carrying the user's roles, so the hot path checks
them without a database read; a role change takes effect at the next refresh (at most
``access_ttl_seconds``). Refresh tokens are opaque random strings stored only as a hash; each
use rotates it, and presenting a spent one again revokes its whole family (theft detection).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

import jwt
from redis.exceptions import RedisError
from tortoise.transactions import in_transaction

from models.users import RefreshToken, Role, User, UserRole
from services import cache, clock, ratelimit
from services.errors import AppError, ErrorCode
from services.settings import get_settings
from services.wechat import wechat

ALGORITHM = "HS256"
AUDIENCE = "xiaoqing-miniprogram"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the access token says."""

    user_id: int
    roles: frozenset[str]
    # Asked on every request, so answered once: str() of an enum member is not free.
    is_staff: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_staff", not self.roles.isdisjoint(_STAFF_ROLES))

    def has(self, *roles: Role | str) -> bool:
        return any((r.value if isinstance(r, Role) else r) in self.roles for r in roles)


_STAFF_ROLES = frozenset({Role.staff.value, Role.admin.value})


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    is_new_user: bool


def role_names(granted: Iterable[UserRole | str]) -> list[str]:
    # Everyone is a resident; the other roles are granted.
    names = (g.role.value if isinstance(g, UserRole) else str(g) for g in granted)
    return sorted({Role.resident.value, *names})


async def roles_of(user: User) -> list[str]:
    """The roles the database holds for ``user``, published for ``effective_principal``.
    Everything that issues a token or changes a grant reads through here, so the published
    set is overwritten with the truth at each of those moments."""
    roles = await _stored_roles(user.id)
    await _publish_roles(user.id, roles, only_if_absent=False)
    return roles


async def _stored_roles(user_id: int) -> list[str]:
    granted = await UserRole.filter(user_id=user_id).values_list("role", flat=True)
    return role_names(str(role) for role in granted)


# --- roles of a token issued before a revocation ----------------------------------------------
#
# An access token names its roles for up to 15 minutes. Any token naming more than "resident"
# is checked against the roles the account holds now: a role revoked since is dropped from
# the principal before any route or service sees it. The current set is read from Redis
# (written on every grant, revocation and token issue; kept by each worker for a second) and,
# when Redis has no entry or is unreachable, from the database, which is the truth. Residents'
# tokens carry no power to lose and skip the check. A role *granted* after issue still arrives
# with the next refresh: the check only ever narrows.

_ROLES_KEY = "auth:roles:"
_RESIDENT_ONLY = frozenset({Role.resident.value})
# Each worker keeps what it read for this long: a staff scanner sends requests back to back,
# and a Redis GET is ~95 µs of CPU on a ~450 µs scan. A change is seen at once by the worker
# that made it and within this bound by the others.
ROLES_LOCAL_SECONDS = 1.0
_local: dict[int, tuple[float, frozenset[str]]] = {}


def _remember(user_id: int, roles: frozenset[str]) -> None:
    if len(_local) >= 8192:
        _local.clear()  # a bound, not an LRU: refilling costs one read per user
    _local[user_id] = (time.monotonic() + ROLES_LOCAL_SECONDS, roles)


async def _publish_roles(user_id: int, roles: list[str], *, only_if_absent: bool) -> None:
    if not only_if_absent:
        _remember(user_id, frozenset(roles))
    try:
        # SET for a change, SET NX for a fill from a read: a fill that read before a revocation
        # can't overwrite the revocation's entry.
        await cache.redis().set(f"{_ROLES_KEY}{user_id}", ",".join(roles),
                                ex=get_settings().access_ttl_seconds, nx=only_if_absent)
    except RedisError:
        # The database stays the truth; the next check reads it.
        log.warning("could not publish roles", extra={"user_id": user_id})


async def publish_roles_change(user: User) -> list[str]:
    """After a grant or revocation commits. Unlike a fill, this write is part of the promise:
    if it is lost, Redis keeps the old set and other workers honour a revoked role until the
    entry expires. So a failure is a 503 (the change itself stays committed) and the admin's
    retry, which changes nothing more, publishes again."""
    roles = await _stored_roles(user.id)
    _remember(user.id, frozenset(roles))
    try:
        await cache.redis().set(f"{_ROLES_KEY}{user.id}", ",".join(roles),
                                ex=get_settings().access_ttl_seconds)
    except RedisError as exc:
        raise AppError(ErrorCode.unavailable,
                       "角色已变更，但暂未同步到所有服务节点，请重试") from exc
    return roles


async def current_roles(user_id: int) -> frozenset[str]:
    local = _local.get(user_id)
    if local is not None and local[0] > time.monotonic():
        return local[1]
    try:
        cached = await cache.redis().get(f"{_ROLES_KEY}{user_id}")
    except RedisError:
        cached = None
    if cached is not None:
        roles = frozenset(str(cached).split(","))
    else:
        stored = await _stored_roles(user_id)
        await _publish_roles(user_id, stored, only_if_absent=True)
        roles = frozenset(stored)
    _remember(user_id, roles)
    return roles


async def effective_principal(principal: Principal) -> Principal:
    """``principal`` without the roles its account no longer holds."""
    if principal.roles <= _RESIDENT_ONLY:
        return principal
    current = await current_roles(principal.user_id)
    if principal.roles <= current:
        return principal
    return Principal(user_id=principal.user_id, roles=principal.roles & current)


def issue_access_token(user: User, roles: list[str]) -> str:
    s = get_settings()
    now = clock.now()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "roles": roles,
        "iss": s.jwt_issuer,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=s.access_ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, s.jwt_secret, algorithm=ALGORITHM)


def decode_access_token(token: str) -> Principal:
    s = get_settings()
    principal, expires = _verified(token, s.jwt_secret, s.jwt_issuer)
    # A verified token stays verified; only the clock can end it, so that is re-checked.
    if expires <= time.time():
        raise AppError(ErrorCode.token_expired)
    return principal


@lru_cache(maxsize=8192)
def _verified(token: str, secret: str, issuer: str) -> tuple[Principal, int]:
    """Signature and claims of an access token, checked once per token and worker: PyJWT
    costs ~60 µs a call, a quarter of a scan's budget, and a client sends the same token for
    up to 15 minutes. Errors are not cached (lru_cache never stores a raise), and the secret
    is part of the key, so rotating it invalidates every entry."""
    try:
        # The algorithm list is pinned: a token claiming "none" or RS256 is refused.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["exp", "sub", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AppError(ErrorCode.token_expired) from exc
    except jwt.PyJWTError as exc:
        raise AppError(ErrorCode.invalid_token) from exc
    try:
        principal = Principal(
            user_id=int(claims["sub"]),
            roles=frozenset(claims.get("roles", [])),
        )
        return principal, int(claims["exp"])
    except (TypeError, ValueError) as exc:
        raise AppError(ErrorCode.invalid_token) from exc


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _new_refresh(user: User, family: str) -> str:
    token = secrets.token_urlsafe(32)
    await RefreshToken.create(
        user=user,
        family=family,
        token_hash=_hash(token),
        expires_at=clock.now() + timedelta(seconds=get_settings().refresh_ttl_seconds),
    )
    return token


async def _pair(user: User, family: str, *, is_new: bool) -> TokenPair:
    roles = await roles_of(user)
    return TokenPair(
        access_token=issue_access_token(user, roles),
        refresh_token=await _new_refresh(user, family),
        expires_in=get_settings().access_ttl_seconds,
        user=user,
        is_new_user=is_new,
    )


async def login_with_wechat(*, code: str, client_ip: str) -> TokenPair:
    s = get_settings()
    # Per address: a login code is worthless after one use, but a bot can still hammer
    # jscode2session and our user table.
    await ratelimit.hit(
        f"login:{client_ip}", limit=s.login_rate_limit, window_seconds=s.login_rate_window_seconds
    )
    session = await wechat().login(code)
    user, created = await User.get_or_create(
        openid=session.openid, defaults={"unionid": session.unionid}
    )
    if not user.is_active:
        raise AppError(ErrorCode.forbidden, "账号已停用，请联系客服")
    user.last_login_at = clock.now()
    await user.save(update_fields=["last_login_at"])
    return await _pair(user, uuid.uuid4().hex, is_new=created)


async def refresh(*, refresh_token: str) -> TokenPair:
    now = clock.now()
    token_hash = _hash(refresh_token)
    owner = await RefreshToken.filter(token_hash=token_hash).values_list("user_id", flat=True)
    if not owner:
        raise AppError(ErrorCode.invalid_token)
    async with in_transaction():
        # Queue concurrent refreshes of one account on its user row first: waiting on the
        # token row instead lets InnoDB deadlock the waiters against the successor's insert.
        await User.select_for_update().get(id=owner[0])
        row = (
            await RefreshToken.filter(token_hash=token_hash)
            .select_for_update()
            .select_related("user")
            .first()
        )
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            raise AppError(ErrorCode.invalid_token)
        if row.used_at is not None:
            # A spent token came back: someone holds a copy. Kill every token descended from
            # the same login so neither the thief nor the victim's copy keeps working.
            await RefreshToken.filter(family=row.family, revoked_at=None).update(revoked_at=now)
            successor = None
        else:
            if not row.user.is_active:
                raise AppError(ErrorCode.forbidden, "账号已停用，请联系客服")
            row.used_at = now
            await row.save(update_fields=["used_at"])
            # Issued under the same lock, so a replay racing this rotation revokes it too.
            successor = await _new_refresh(row.user, row.family)
    if successor is None:
        raise AppError(ErrorCode.refresh_reused)
    user = row.user
    roles = await roles_of(user)
    return TokenPair(access_token=issue_access_token(user, roles), refresh_token=successor,
                     expires_in=get_settings().access_ttl_seconds, user=user, is_new_user=False)


async def logout(*, user_id: int, refresh_token: str | None) -> None:
    """Revoke the presented refresh token's family, or every session of the user."""
    now = clock.now()
    if refresh_token:
        row = await RefreshToken.filter(token_hash=_hash(refresh_token), user_id=user_id).first()
        if row is not None:
            await RefreshToken.filter(family=row.family, revoked_at=None).update(revoked_at=now)
            return
    await RefreshToken.filter(user_id=user_id, revoked_at=None).update(revoked_at=now)
