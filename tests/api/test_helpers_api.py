"""帮办代办 over HTTP: ask for help → helper takes it, authorisation of every route."""

from __future__ import annotations

from typing import Any

from models.audit import AuditLog
from models.users import Role
from services import seed
from tests.api.test_cases_api import LI, ZHANG, _resident


async def _setup(api: Any) -> dict[str, Any]:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    s: dict[str, Any] = {
        "admin": await api.login("admin", Role.admin, Role.staff),
        "staff": await api.login("staff", Role.staff),
        "h1": await api.login("h1", Role.helper),
        "h2": await api.login("h2", Role.helper),
        "zhang": await _resident(api, "zhang", ZHANG),
        "li": await _resident(api, "li", LI),
    }
    for h in ("h1", "h2"):
        resp = await s["admin"].put(f"/api/v1/admin/helpers/{s[h].user_id}", json={
            "hall_code": "H-XF-000", "departments": ["市民政局"], "themes": ["养老服务"]})
        assert resp.status == 200, resp.text
    return s


async def test_ask_for_help_and_the_helper_takes_it(api: Any) -> None:
    s = await _setup(api)
    resp = await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": "H-XF-000", "need_help": True,
        "help_note": "行动不便，请帮忙"})
    assert resp.status == 201, resp.text
    case = resp.json
    assert case["help_requested"] is True and case["helper"]["status"] == "offered"
    helper = "h1" if case["helper"]["helper_user_id"] == s["h1"].user_id else "h2"
    other = "h2" if helper == "h1" else "h1"

    work = (await s[helper].get("/api/v1/helper/cases")).json["items"]
    assert [w["case_id"] for w in work] == [case["id"]]
    assert work[0]["applicant_name"] == "*建国" and work[0]["offer_expires_at"]
    assert (await s[other].get("/api/v1/helper/cases")).json["items"] == []

    aid = work[0]["assignment_id"]
    resp = await s[other].post(f"/api/v1/helper/assignments/{aid}/accept")
    assert resp.status == 404
    resp = await s[helper].post(f"/api/v1/helper/assignments/{aid}/accept")
    assert resp.status == 200 and resp.json["status"] == "accepted"
    resp = await s[helper].post(f"/api/v1/helper/assignments/{aid}/accept")
    assert resp.status == 409 and resp.json["error"]["code"] == "assignment_state"

    # The helper reads the case masked; the other helper can't read it at all.
    seen = await s[helper].get(f"/api/v1/cases/{case['id']}")
    assert seen.status == 200 and seen.json["applicant"]["id_number"] == "6210**********0316"
    assert (await s[other].get(f"/api/v1/cases/{case['id']}")).status == 404

    # Unmasked only with the resident's authorisation, and audited.
    reveal = f"/api/v1/helper/cases/{case['id']}/reveal"
    resp = await s[helper].post(reveal, json={"reason": "核对身份信息"})
    assert resp.status == 403 and resp.json["error"]["code"] == "proxy_authorization_required"
    grant = await s["zhang"].post("/api/v1/proxy-authorizations", json={
        "helper_user_id": s[helper].user_id, "scopes": ["view_personal", "supplement"],
        "case_id": case["id"], "days": 7})
    assert grant.status == 201, grant.text
    resp = await s[helper].post(reveal, json={"reason": "核对身份信息"})
    assert resp.status == 200 and resp.json["id_number"] == "621002194103050316"
    assert await AuditLog.filter(action="case.applicant.reveal",
                                 actor_id=s[helper].user_id).count() == 1
    assert (await s[other].post(reveal, json={"reason": "核对身份信息"})).status == 404

    # Acting as proxy: resubmit for the resident.
    cid = case["id"]
    await s["staff"].post(f"/api/v1/cases/{cid}/transitions", json={"action": "accept"})
    await s["staff"].post(f"/api/v1/cases/{cid}/supplement-requests",
                          json={"items": [{"material": "居民身份证", "reason": "复印件不清晰"}]})
    resp = await s[helper].post(f"/api/v1/cases/{cid}/transitions",
                                json={"action": "resubmit", "note": "已陪同补交"})
    assert resp.status == 200, resp.text
    assert resp.json["timeline"][-1]["actor_kind"] == "helper"


async def test_decline_and_transfer_over_http(api: Any) -> None:
    s = await _setup(api)
    case = (await s["zhang"].post("/api/v1/cases", json={
        "item_code": "MZ-004", "hall_code": "H-XF-000"})).json
    help_resp = await s["zhang"].post(f"/api/v1/cases/{case['id']}/help", json={"note": "帮帮我"})
    assert help_resp.status == 200 and help_resp.json["assigned"] is True
    first = help_resp.json["helper"]
    holder = "h1" if first["helper_user_id"] == s["h1"].user_id else "h2"
    other = "h2" if holder == "h1" else "h1"
    resp = await s[holder].post(f"/api/v1/helper/assignments/{first['assignment_id']}/decline",
                                json={"reason": "今天外出"})
    assert resp.status == 200 and resp.json["status"] == "declined"
    nxt = (await s[other].get("/api/v1/helper/cases")).json["items"]
    assert [w["case_id"] for w in nxt] == [case["id"]]
    aid = nxt[0]["assignment_id"]
    await s[other].post(f"/api/v1/helper/assignments/{aid}/accept")
    resp = await s[other].post(f"/api/v1/helper/assignments/{aid}/transfer",
                               json={"note": "交回", "to_helper_user_id": s[other].user_id})
    assert resp.status == 422
    resp = await s[other].post(f"/api/v1/helper/assignments/{aid}/transfer", json={
        "note": "请熟悉的同事接手", "to_helper_user_id": s[holder].user_id})
    assert resp.status == 200, resp.text
    assert resp.json["transferred"]["status"] == "transferred"
    assert resp.json["next_helper"]["helper_user_id"] == s[holder].user_id


async def test_helper_routes_authorization(api: Any) -> None:
    s = await _setup(api)
    zhang, li, h1 = s["zhang"], s["li"], s["h1"]
    # Residents are not helpers.
    assert (await zhang.get("/api/v1/helper/cases")).status == 403
    assert (await zhang.post("/api/v1/helper/assignments/1/accept")).status == 403
    assert (await zhang.put("/api/v1/helper/duty", json={"on_duty": False})).status == 403
    # Only admins manage profiles; staff may list.
    body = {"hall_code": "H-XF-000", "departments": ["市民政局"]}
    assert (await s["staff"].put(f"/api/v1/admin/helpers/{h1.user_id}", json=body)).status == 403
    assert (await h1.get("/api/v1/admin/helpers")).status == 403
    listing = (await s["staff"].get("/api/v1/admin/helpers")).json["helpers"]
    assert {p["user_id"] for p in listing} == {h1.user_id, s["h2"].user_id}
    # A profile only for someone holding the helper role; and a real hall.
    resp = await s["admin"].put(f"/api/v1/admin/helpers/{zhang.user_id}", json=body)
    assert resp.status == 422
    resp = await s["admin"].put(f"/api/v1/admin/helpers/{h1.user_id}",
                                json={"hall_code": "NOPE"})
    assert resp.status == 422
    # Going off duty.
    resp = await h1.put("/api/v1/helper/duty", json={"on_duty": False})
    assert resp.status == 200 and resp.json["on_duty"] is False

    # Authorisations: only to helpers, only one's own cases, revocable only by the grantor.
    resp = await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": li.user_id, "scopes": ["apply"]})
    assert resp.status == 404
    li_case = (await li.post("/api/v1/cases", json={"item_code": "MZ-004",
                                                   "hall_code": "H-XF-000"})).json
    resp = await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": h1.user_id, "scopes": ["apply"], "case_id": li_case["id"]})
    assert resp.status == 404
    resp = await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": h1.user_id, "scopes": ["nonsense"]})
    assert resp.status == 422
    grant = (await zhang.post("/api/v1/proxy-authorizations", json={
        "helper_user_id": h1.user_id, "scopes": ["apply"], "days": 3})).json
    assert (await li.delete(f"/api/v1/proxy-authorizations/{grant['id']}")).status == 404
    assert (await li.get("/api/v1/proxy-authorizations")).json["authorizations"] == []
    # With the grant, h1 files for zhang; without one, not for li.
    resp = await h1.post("/api/v1/cases", json={"item_code": "MZ-004", "hall_code": "H-XF-000",
                                                "applicant_user_id": zhang.user_id})
    assert resp.status == 201 and resp.json["filed_by_proxy"] is True
    resp = await h1.post("/api/v1/cases", json={"item_code": "MZ-004", "hall_code": "H-XF-000",
                                                "applicant_user_id": li.user_id})
    assert resp.status == 403
    revoked = await zhang.delete(f"/api/v1/proxy-authorizations/{grant['id']}")
    assert revoked.status == 200 and revoked.json["revoked_at"] is not None
    resp = await h1.post("/api/v1/cases", json={"item_code": "MZ-004", "hall_code": "H-XF-000",
                                                "applicant_user_id": zhang.user_id})
    assert resp.status == 403
