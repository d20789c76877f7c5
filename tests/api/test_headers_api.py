"""Response headers: ``X-Content-Type-Options: nosniff`` on every answer (errors and unknown
routes too), ``Cache-Control: no-store`` on whatever carries tokens or personal data, and
public reference data left cacheable."""

from __future__ import annotations

from typing import Any

from models.users import Role
from services import people, seed
from tests.api.test_helpers_api import _setup


def _no_store(resp: Any) -> bool:
    return "no-store" in resp.headers.get("cache-control", "")


async def test_nosniff_on_every_kind_of_answer(api: Any) -> None:
    me = await api.login("resident-h")
    answers = [
        await api.get("/healthz"),
        await api.get("/api/v1/no-such-route"),  # 404 from the router
        await api.request("PATCH", "/healthz"),  # 405
        await api.request("POST", "/api/v1/auth/wechat-login", json=None,
                          headers={"content-type": "application/json"}, data="{oops"),
        await api.get("/api/v1/me"),  # 401
        await me.get("/api/v1/me"),
        await me.get("/api/v1/admin/stats"),  # 403
        await me.get("/api/v1/feedback/999999"),  # 404 from a service
        await api.get("/api/v1/feedback/public"),
    ]
    statuses = {r.status for r in answers}
    assert {200, 400, 401, 403, 404, 405} <= statuses, statuses
    for resp in answers:
        assert resp.headers.get("x-content-type-options") == "nosniff", resp.status


async def test_tokens_are_not_stored(api: Any) -> None:
    login = await api.post("/api/v1/auth/wechat-login", json={"code": "resident-tok"})
    assert login.status == 200 and "access_token" in login.json
    assert _no_store(login)
    refreshed = await api.post("/api/v1/auth/refresh",
                               json={"refresh_token": login.json["refresh_token"]})
    assert refreshed.status == 200, refreshed.text
    assert _no_store(refreshed)


async def test_admin_reveal_is_not_stored(api: Any) -> None:
    person = await people.upsert_person(name="张建国", id_number="621002194103050316")
    staff = await api.login("clerk-h", Role.staff)
    resp = await staff.post(f"/api/v1/admin/persons/{person.id}/reveal",
                            json={"reason": "核验身份信息"})
    assert resp.status == 200 and resp.json["id_number"] == "621002194103050316"
    assert _no_store(resp)


async def test_helper_reveal_is_not_stored(api: Any) -> None:
    s = await _setup(api)
    case = (await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": "H-XF-000", "need_help": True})).json
    helper = "h1" if case["helper"]["helper_user_id"] == s["h1"].user_id else "h2"
    aid = (await s[helper].get("/api/v1/helper/cases")).json["items"][0]["assignment_id"]
    assert (await s[helper].post(f"/api/v1/helper/assignments/{aid}/accept")).status == 200
    grant = await s["zhang"].post("/api/v1/proxy-authorizations", json={
        "helper_user_id": s[helper].user_id, "scopes": ["view_personal"],
        "case_id": case["id"], "days": 7})
    assert grant.status == 201, grant.text
    resp = await s[helper].post(f"/api/v1/helper/cases/{case['id']}/reveal",
                                json={"reason": "核对身份信息"})
    assert resp.status == 200 and resp.json["id_number"] == "621002194103050316"
    assert _no_store(resp)


async def test_signed_in_answers_are_not_stored_public_ones_are_cacheable(api: Any) -> None:
    await seed.run()
    me = await api.login("resident-c")
    assert _no_store(await me.get("/api/v1/me"))
    assert _no_store(await me.get("/api/v1/appointments"))  # carries check-in codes
    guide = await api.get("/api/v1/guide/items")
    assert guide.status == 200 and not _no_store(guide)
