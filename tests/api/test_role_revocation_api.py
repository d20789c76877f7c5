"""Revoking a role ends every power that came with it (issue 13): the relations stored for it
(grid links, proxy authorisations held, helper duty and assignments, enterprise agencies) and
the access token issued before the revocation, which still names the role for up to 15 min."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from models.cases import HelperAssignment, HelperProfile, ProxyAuthorization
from models.codes import GridAssignment
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Role, UserRole
from services import auth, cache, seed, users
from services.onbehalf import assign_grid_worker
from tests.api.test_cases_api import LI, ZHANG, _resident
from tests.conftest import Api
from tests.unit.test_codes import AGENT_USCC

CASE = {"item_code": "MZ-004", "hall_code": "H-XF-000"}
GRID = {"county": "西峰区", "community": "长庆社区", "contact_name": "网格员",
        "contact_phone": "0934-8212345"}


async def _demo() -> None:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)


async def test_a_revoked_community_worker_keeps_no_proxy_power(api: Api) -> None:
    await _demo()
    admin = await api.login("admin-1", Role.admin)
    zhang = await _resident(api, "zhang", ZHANG)
    worker = await api.login("worker-a", Role.community_worker)
    await assign_grid_worker(user_id=worker.user_id, **GRID)
    grant = await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": worker.user_id, "scopes": ["apply", "book"]})
    assert grant.status == 201, grant.text
    filed = await worker.post("/api/v1/cases", json={**CASE, "applicant_user_id": zhang.user_id})
    assert filed.status == 201, filed.text

    resp = await admin.delete(f"/api/v1/admin/users/{worker.user_id}/roles/community_worker")
    assert resp.status == 200 and "community_worker" not in resp.json["roles"]
    # The token issued before the revocation still says community_worker: it files nothing.
    again = await worker.post("/api/v1/cases", json={**CASE, "applicant_user_id": zhang.user_id})
    assert again.status == 403, again.text
    # Every stored relation of the role ended with it.
    listed = (await zhang.get("/api/v1/proxy-authorizations")).json["authorizations"]
    assert [g["revoked_at"] is not None for g in listed] == [True]
    assert await ProxyAuthorization.filter(helper_id=worker.user_id, revoked_at=None).count() == 0
    assert not await GridAssignment.exists(user_id=worker.user_id, is_active=True)
    # Granting the role again gives no power back by itself: the relations stay ended.
    await admin.post(f"/api/v1/admin/users/{worker.user_id}/roles",
                     json={"role": "community_worker"})
    fresh = await api.login("worker-a")
    again = await fresh.post("/api/v1/cases", json={**CASE, "applicant_user_id": zhang.user_id})
    assert again.status == 403 and again.json["error"]["code"] == "proxy_authorization_required"


async def test_a_revoked_helper_loses_worklist_assignments_and_authorisations(api: Api) -> None:
    await _demo()
    admin = await api.login("admin-1", Role.admin, Role.staff)
    h1 = await api.login("h1", Role.helper)
    h2 = await api.login("h2", Role.helper)
    li = await _resident(api, "li", LI)
    for h in (h1, h2):
        resp = await admin.put(f"/api/v1/admin/helpers/{h.user_id}", json={
            "hall_code": "H-XF-000", "departments": ["市民政局"], "themes": ["养老服务"]})
        assert resp.status == 200, resp.text
    await li.post("/api/v1/proxy-authorizations",
                  json={"helper_user_id": h1.user_id, "scopes": ["apply", "withdraw"]})
    case = await li.post("/api/v1/cases", json={**CASE, "need_help": True})
    assert case.status == 201, case.text
    helper_id = case.json["helper"]["helper_user_id"]
    held, other = (h1, h2) if helper_id == h1.user_id else (h2, h1)
    aid = (await held.get("/api/v1/helper/cases")).json["items"][0]["assignment_id"]
    assert (await held.post(f"/api/v1/helper/assignments/{aid}/accept")).status == 200

    resp = await admin.delete(f"/api/v1/admin/users/{held.user_id}/roles/helper")
    assert resp.status == 200, resp.text
    # The old token: no worklist, no accepting, no filing in li's name.
    assert (await held.get("/api/v1/helper/cases")).status == 403
    assert (await held.post(f"/api/v1/helper/assignments/{aid}/accept")).status == 403
    # The case is not stranded with someone who can no longer help: it moves on.
    assignment = await HelperAssignment.get(id=aid)
    assert assignment.status != "accepted" and assignment.active_case_id is None
    offered = (await other.get("/api/v1/helper/cases")).json["items"]
    assert [w["case_id"] for w in offered] == [case.json["id"]]
    profile = await HelperProfile.get(user_id=held.user_id)
    assert profile.on_duty is False
    assert await ProxyAuthorization.filter(helper_id=held.user_id, revoked_at=None).count() == 0
    # The other helper's access is untouched.
    assert (await other.get("/api/v1/helper/cases")).status == 200


async def test_a_revoked_enterprise_agent_can_no_longer_act_for_the_firm(
        api: Api, fake_wechat: Any) -> None:
    await _demo()
    ent = await Enterprise.get(uscc=AGENT_USCC)
    admin = await api.login("admin-1", Role.admin)
    agent = await api.login("agent-1", Role.enterprise_agent)
    await EnterpriseAgent.create(enterprise=ent, user_id=agent.user_id)
    printed = await agent.post(f"/api/v1/codes/enterprises/{ent.id}")
    assert printed.status == 201, printed.text
    assert (await agent.get("/api/v1/policies/for-me")).status == 200

    resp = await admin.delete(f"/api/v1/admin/users/{agent.user_id}/roles/enterprise_agent")
    assert resp.status == 200, resp.text
    assert not await EnterpriseAgent.exists(user_id=agent.user_id)
    # The ex-agent can't void the printed code by re-issuing it, nor read or revoke it.
    for method in ("post", "get", "delete"):
        r = await getattr(agent, method)(f"/api/v1/codes/enterprises/{ent.id}")
        assert r.status == 404, (method, r.text)
    current = await admin.get(f"/api/v1/codes/enterprises/{ent.id}")
    assert current.json["content"] == printed.json["content"]
    # No case in the firm's name, no policies as its agent.
    filed = await agent.post("/api/v1/cases", json={"item_code": "RS-008",
                                                    "hall_code": "H-XF-000",
                                                    "enterprise_id": ent.id})
    assert filed.status in (404, 422), filed.text
    mine = (await agent.get("/api/v1/policies/for-me")).json["policies"]
    assert all(not p["enterprises"] for p in mine)


async def test_a_revoked_role_is_refused_on_the_old_token_even_after_a_redis_loss(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # No per-worker memory, so each request below really reads Redis or the database.
    monkeypatch.setattr(auth, "ROLES_LOCAL_SECONDS", 0.0)
    admin = await api.login("admin-1", Role.admin)
    staff = await api.login("staff-1", Role.staff)
    assert (await staff.get("/api/v1/admin/users")).status == 200
    resp = await admin.delete(f"/api/v1/admin/users/{staff.user_id}/roles/staff")
    assert resp.status == 200
    assert (await staff.get("/api/v1/admin/users")).status == 403
    # The database is the truth: with Redis emptied the token is still refused.
    await cache.redis().flushdb()
    assert (await staff.get("/api/v1/admin/users")).status == 403
    # The check only narrows: a role granted after the token was issued arrives with the next
    # refresh, as before.
    await admin.post(f"/api/v1/admin/users/{staff.user_id}/roles", json={"role": "helper"})
    assert (await staff.get("/api/v1/helper/cases")).status == 403
    refreshed = await api.post("/api/v1/auth/refresh", json={"refresh_token": staff.refresh})
    assert refreshed.status == 200, refreshed.text
    token = refreshed.json["access_token"]
    assert (await api.get("/api/v1/helper/cases", token=token)).status == 200
    assert (await api.get("/api/v1/admin/users", token=token)).status == 403
    # Someone else's roles are untouched by the revocation.
    assert (await admin.get("/api/v1/admin/users")).status == 200


async def test_a_revocation_redis_did_not_hear_of_is_a_503_and_the_retry_publishes_it(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ROLES_LOCAL_SECONDS", 0.0)
    admin = await api.login("admin-1", Role.admin)
    staff = await api.login("staff-1", Role.staff)
    assert (await staff.get("/api/v1/admin/users")).status == 200  # Redis says staff
    live = cache.redis()
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    # Redis is unreachable while the revocation publishes (and only then).
    real_publish = auth.publish_roles_change

    async def publish_without_redis(user: Any) -> list[str]:
        monkeypatch.setattr(cache, "redis", lambda: dead)
        try:
            return await real_publish(user)
        finally:
            monkeypatch.setattr(cache, "redis", lambda: live)

    monkeypatch.setattr(users, "publish_roles_change", publish_without_redis)
    resp = await admin.delete(f"/api/v1/admin/users/{staff.user_id}/roles/staff")
    await dead.aclose()
    assert resp.status == 503 and resp.json["error"]["code"] == "unavailable", resp.text
    # The revocation is committed, but Redis still says staff: the admin is told to retry...
    assert not await UserRole.exists(user_id=staff.user_id, role=Role.staff)
    monkeypatch.setattr(users, "publish_roles_change", real_publish)
    retry = await admin.delete(f"/api/v1/admin/users/{staff.user_id}/roles/staff")
    assert retry.status == 200 and "staff" not in retry.json["roles"]
    # ... and the retry closed the old token.
    assert (await staff.get("/api/v1/admin/users")).status == 403
