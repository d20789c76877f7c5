"""The roles a token names are narrowed to the roles the account holds now (services.auth):
from Redis, from the database when Redis has nothing or is down, never widened."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from models.users import Role, User, UserRole
from services import auth, cache
from services.auth import Principal


@pytest.fixture(autouse=True)
def _no_local_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ROLES_LOCAL_SECONDS", 0.0)


async def _user(*roles: Role) -> User:
    user = await User.create(openid=f"role-check-{len(roles)}-{id(roles)}")
    for r in roles:
        await UserRole.create(user=user, role=r)
    return user


def _token_says(user: User, *roles: str) -> Principal:
    return Principal(user_id=user.id, roles=frozenset({"resident", *roles}))


async def test_a_revoked_role_is_dropped_and_nothing_is_added() -> None:
    user = await _user(Role.staff, Role.helper)
    narrowed = await auth.effective_principal(_token_says(user, "staff", "admin"))
    assert narrowed.roles == {"resident", "staff"} and narrowed.is_staff
    # A role the account holds but the token doesn't name stays out until the refresh.
    assert not narrowed.has(Role.helper)
    await UserRole.filter(user=user, role=Role.staff).delete()
    await auth.roles_of(user)  # what a revocation does after its commit
    after = await auth.effective_principal(_token_says(user, "staff"))
    assert after.roles == {"resident"} and not after.is_staff


async def test_without_redis_the_database_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    user = await _user(Role.staff)
    await auth.roles_of(user)
    await UserRole.filter(user=user).delete()  # revoked while Redis still says staff...
    await cache.redis().delete(f"auth:roles:{user.id}")  # ... then Redis lost its entry
    narrowed = await auth.effective_principal(_token_says(user, "staff"))
    assert narrowed.roles == {"resident"}
    # Redis unreachable: still the database's answer, no error for the caller.
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    monkeypatch.setattr(cache, "redis", lambda: dead)
    try:
        assert (await auth.effective_principal(_token_says(user, "staff"))).roles == {
            "resident"}
        await UserRole.create(user=user, role=Role.staff)
        assert (await auth.effective_principal(_token_says(user, "staff"))).is_staff
    finally:
        await dead.aclose()


async def test_a_fill_never_overwrites_a_change() -> None:
    user = await _user(Role.staff)
    await UserRole.filter(user=user).delete()
    await auth.roles_of(user)  # the revocation's SET
    # A reader that looked at the database before the revocation fills with SET NX: no effect.
    await auth._publish_roles(user.id, ["resident", "staff"], only_if_absent=True)
    assert await auth.current_roles(user.id) == {"resident"}


async def test_a_residents_token_is_taken_as_it_is() -> None:
    plain = Principal(user_id=10**12, roles=frozenset({"resident"}))
    assert await auth.effective_principal(plain) is plain
