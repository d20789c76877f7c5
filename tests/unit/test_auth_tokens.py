"""Access-token verification is cached per token; the cache must never outlive what it proves."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from models.users import User
from services import auth
from services.errors import AppError, ErrorCode
from services.settings import get_settings


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth._verified.cache_clear()
    yield
    auth._verified.cache_clear()


def _token(user_id: int = 7, roles: tuple[str, ...] = ("resident",)) -> str:
    return auth.issue_access_token(User(id=user_id), list(roles))


def test_second_decode_is_served_from_the_cache():
    token = _token(roles=("resident", "staff"))
    first = auth.decode_access_token(token)
    second = auth.decode_access_token(token)
    assert first == second and first.user_id == 7
    assert first.roles == frozenset({"resident", "staff"})
    info = auth._verified.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_a_cached_token_still_expires(monkeypatch):
    token = _token()
    auth.decode_access_token(token)  # verified and cached while fresh
    later = time.time() + get_settings().access_ttl_seconds + 1
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: later))
    with pytest.raises(AppError) as err:
        auth.decode_access_token(token)
    assert err.value.code is ErrorCode.token_expired


def test_rotating_the_secret_drops_what_the_old_one_verified(monkeypatch):
    token = _token()
    auth.decode_access_token(token)
    monkeypatch.setattr(get_settings(), "jwt_secret", "r" * 48)
    with pytest.raises(AppError) as err:
        auth.decode_access_token(token)
    assert err.value.code is ErrorCode.invalid_token


def test_a_refused_token_is_refused_every_time():
    token = _token()
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(AppError) as err:
            auth.decode_access_token(tampered)
        assert err.value.code is ErrorCode.invalid_token
