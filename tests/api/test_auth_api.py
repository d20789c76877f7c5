"""Login, refresh rotation and reuse detection, logout, rate limiting, JWT pinning."""

import jwt
import pytest

from models.users import RefreshToken, Role
from services.settings import get_settings


async def test_same_code_is_the_same_user_and_new_flag(api, fake_wechat):
    first = await api.post("/api/v1/auth/wechat-login", json={"code": "alice"})
    again = await api.post("/api/v1/auth/wechat-login", json={"code": "alice"})
    bob = await api.post("/api/v1/auth/wechat-login", json={"code": "bob"})
    assert first.status == again.status == bob.status == 200
    assert first.json["user_id"] == again.json["user_id"] != bob.json["user_id"]
    assert first.json["is_new_user"] is True and again.json["is_new_user"] is False
    assert first.json["roles"] == ["resident"]
    # The session key stays on the server: nothing in the reply carries it.
    assert "session_key" not in first.text


async def test_invalid_wechat_code_is_401_envelope(api):
    resp = await api.post("/api/v1/auth/wechat-login", json={"code": "invalid-code"})
    assert resp.status == 401
    assert resp.json["error"]["code"] == "wechat_login_failed"


async def test_refresh_rotates_and_reuse_revokes_the_family(api):
    s = await api.login("alice")
    r1 = await api.post("/api/v1/auth/refresh", json={"refresh_token": s.refresh})
    assert r1.status == 200
    new_refresh = r1.json["refresh_token"]
    assert new_refresh != s.refresh
    # The old token is replayed: refused, and the whole family dies with it.
    replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": s.refresh})
    assert replay.status == 401
    assert replay.json["error"]["code"] == "refresh_reused"
    after = await api.post("/api/v1/auth/refresh", json={"refresh_token": new_refresh})
    assert after.status == 401
    assert await RefreshToken.filter(user_id=s.user_id, revoked_at=None).count() == 0


async def test_other_logins_survive_a_reuse_in_one_family(api):
    phone = await api.login("alice")
    tablet = await api.login("alice")
    await api.post("/api/v1/auth/refresh", json={"refresh_token": phone.refresh})
    await api.post("/api/v1/auth/refresh", json={"refresh_token": phone.refresh})  # reuse
    ok = await api.post("/api/v1/auth/refresh", json={"refresh_token": tablet.refresh})
    assert ok.status == 200


async def test_logout_revokes_refresh(api):
    s = await api.login("alice")
    out = await s.post("/api/v1/auth/logout", json={"refresh_token": s.refresh})
    assert out.status == 200
    resp = await api.post("/api/v1/auth/refresh", json={"refresh_token": s.refresh})
    assert resp.status == 401


async def test_unknown_refresh_token(api):
    resp = await api.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
    assert resp.status == 401 and resp.json["error"]["code"] == "invalid_token"


async def test_login_is_rate_limited_per_address(api):
    limit = get_settings().login_rate_limit
    statuses = [
        (await api.post("/api/v1/auth/wechat-login", json={"code": f"u{i}"})).status
        for i in range(limit + 2)
    ]
    assert statuses[:limit] == [200] * limit
    assert statuses[limit:] == [429, 429]
    last = await api.post("/api/v1/auth/wechat-login", json={"code": "late"})
    assert last.json["error"]["code"] == "rate_limited"
    assert int(last.headers["retry-after"]) >= 1


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer not-a-jwt", "Basic abc"])
async def test_missing_or_garbage_token_is_401(api, header):
    resp = await api.get("/api/v1/me", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    assert resp.json["error"]["code"] in {"unauthenticated", "invalid_token"}


async def test_jwt_algorithm_is_pinned(api):
    s = await api.login("alice")
    claims = jwt.decode(s.token, options={"verify_signature": False})
    forged_none = jwt.encode({**claims, "roles": ["admin"]}, "", algorithm="none")
    resp = await api.get("/api/v1/admin/users", token=forged_none)
    assert resp.status == 401
    forged_key = jwt.encode({**claims, "roles": ["admin"]}, "x" * 40, algorithm="HS256")
    resp = await api.get("/api/v1/admin/users", token=forged_key)
    assert resp.status == 401


async def test_expired_access_token(api):
    s = await api.login("alice")
    claims = jwt.decode(s.token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": claims["iat"] - 10}, get_settings().jwt_secret,
                         algorithm="HS256")
    resp = await api.get("/api/v1/me", token=expired)
    assert resp.status == 401 and resp.json["error"]["code"] == "token_expired"


async def test_role_arrives_with_the_next_token(api):
    admin = await api.login("root", Role.admin)
    alice = await api.login("alice")
    grant = await admin.post(f"/api/v1/admin/users/{alice.user_id}/roles", json={"role": "staff"})
    assert grant.status == 200 and "staff" in grant.json["roles"]
    assert (await alice.get("/api/v1/admin/users")).status == 403
    fresh = await api.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh})
    resp = await api.get("/api/v1/admin/users", token=fresh.json["access_token"])
    assert resp.status == 200
