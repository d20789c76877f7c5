"""办件 over HTTP: apply → supplement → approved, who may read and move what, staff lists."""

from __future__ import annotations

from typing import Any

from models.users import Role
from services import outbox, seed

ZHANG = ("张建国", "621002194103050316")
LI = ("李秀兰", "621021197508120426")


async def _resident(api: Any, code: str, who: tuple[str, str]) -> Any:
    s = await api.login(code)
    await s.bind_identity(*who)
    return s


async def _setup(api: Any) -> tuple[Any, Any, Any]:
    data = seed.load_demo_data()
    await seed.seed_people(data)
    await seed.seed_catalogue(data)
    staff = await api.login("staff", Role.staff)
    zhang = await _resident(api, "zhang", ZHANG)
    li = await _resident(api, "li", LI)
    return staff, zhang, li


async def _open(s: Any, **over: Any) -> dict[str, Any]:
    body = {"item_code": "MZ-003", "hall_code": "H-XF-000"} | over
    resp = await s.post("/api/v1/cases", json=body)
    assert resp.status == 201, resp.text
    return resp.json  # type: ignore[no-any-return]


async def _move(s: Any, case_id: int, action: str, status: int = 200, **kw: Any) -> Any:
    resp = await s.post(f"/api/v1/cases/{case_id}/transitions", json={"action": action, **kw})
    assert resp.status == status, resp.text
    return resp.json


async def test_apply_supplement_approved(api: Any, fake_wechat: Any) -> None:
    staff, zhang, _ = await _setup(api)
    for template in ("case_status", "case_supplement", "case_result"):
        await zhang.post("/api/v1/me/subscriptions",
                         json={"template": template, "accepted": True, "long_term": True})
    case = await _open(zhang, note="申请低保")
    cid = case["id"]
    assert case["status"] == "submitted" and case["due_at"] is None
    assert case["applicant"]["name"] == "*建国"
    assert case["applicant"]["id_number"] == "6210**********0316"
    assert case["actions"] == ["withdraw"]

    await _move(staff, cid, "accept")
    resp = await staff.post(f"/api/v1/cases/{cid}/supplement-requests", json={
        "items": [{"material": "户口簿", "reason": "缺少户主页"},
                  {"material": "家庭收入情况声明", "reason": "未签字"}]})
    assert resp.status == 201, resp.text
    got = (await zhang.get(f"/api/v1/cases/{cid}")).json
    assert got["status"] == "supplement_requested" and got["clock_paused"] is True
    assert got["due_at"] is None
    assert [m["material"] for m in got["missing"]] == ["户口簿", "家庭收入情况声明"]
    assert got["actions"] == ["resubmit", "withdraw"]

    await _move(zhang, cid, "resubmit", note="已补齐")
    await _move(staff, cid, "start_review")
    # A second notice without saying why is refused; with a reason it goes through and the
    # reason is for supervisors, not for the applicant's screen.
    resp = await staff.post(f"/api/v1/cases/{cid}/supplement-requests",
                            json={"items": [{"material": "居民身份证", "reason": "已过期"}]})
    assert resp.status == 422 and "new_requirement_reason" in resp.json["error"]["fields"]
    resp = await staff.post(f"/api/v1/cases/{cid}/supplement-requests", json={
        "items": [{"material": "居民身份证", "reason": "已过期"}],
        "new_requirement_reason": "审查中发现身份证已于上周到期"})
    assert resp.status == 201
    assert resp.json["supplements"][1]["new_requirement_reason"] == "审查中发现身份证已于上周到期"
    mine = (await zhang.get(f"/api/v1/cases/{cid}")).json
    assert mine["supplements"][1]["new_requirement_reason"] is None
    repeated = (await staff.get("/api/v1/admin/case-supplements/repeated")).json
    assert [s["case_id"] for s in repeated["supplements"]] == [cid]

    await _move(zhang, cid, "resubmit")
    await _move(staff, cid, "start_review")
    done = await _move(staff, cid, "approve", note="符合条件")
    assert done["status"] == "approved" and done["due_at"] is not None
    await _move(staff, cid, "deliver")
    closed = await _move(staff, cid, "close")
    assert closed["status"] == "closed" and closed["reopen_until"] is not None
    assert [e["action"] for e in closed["timeline"]] == [
        "submit", "accept", "request_supplement", "resubmit", "start_review",
        "request_supplement", "resubmit", "start_review", "approve", "deliver", "close"]
    # One subscribe message per status change, to the applicant (补正 and the result by
    # their own templates), sent once the outbox delivers what the commits promised.
    await outbox.dispatch_due()
    case_templates = {"tmpl-case-status", "tmpl-case-supplement", "tmpl-case-result"}
    sent = [m for m in fake_wechat.sent_messages if m["template_id"] in case_templates]
    assert len(sent) == 11, sent

    listing = (await zhang.get("/api/v1/cases")).json
    assert [c["id"] for c in listing["cases"]] == [cid]


async def test_illegal_transition_is_409_with_code(api: Any) -> None:
    staff, zhang, _ = await _setup(api)
    cid = (await _open(zhang))["id"]
    err = await _move(staff, cid, "approve", status=409)
    assert err["error"]["code"] == "illegal_transition"
    err = await _move(zhang, cid, "accept", status=403)
    assert err["error"]["code"] == "forbidden"
    stale = await _move(staff, cid, "accept", expected_version=7, status=409)
    assert stale["error"]["code"] == "case_changed"
    bad = await _move(staff, cid, "request_supplement", status=422)
    assert "action" in bad["error"]["fields"]


async def test_a_resident_cannot_read_or_move_anothers_case(api: Any) -> None:
    staff, zhang, li = await _setup(api)
    cid = (await _open(zhang))["id"]
    for resp in (
        await li.get(f"/api/v1/cases/{cid}"),
        await li.post(f"/api/v1/cases/{cid}/transitions", json={"action": "withdraw"}),
        await li.post(f"/api/v1/cases/{cid}/reopen", json={"reason": "我想重新办理"}),
        await li.post(f"/api/v1/cases/{cid}/help", json={}),
        await li.get("/api/v1/cases/99999999999"),
        await li.get(f"/api/v1/cases/{2**63}"),
    ):
        assert resp.status == 404, resp.text
        assert resp.json["error"]["code"] == "not_found"
    assert (await li.get("/api/v1/cases")).json["cases"] == []
    # Staff-only routes.
    for path in ("/api/v1/admin/cases", "/api/v1/admin/case-alerts",
                 "/api/v1/admin/case-supplements/repeated"):
        assert (await zhang.get(path)).status == 403
        assert (await staff.get(path)).status == 200
    resp = await zhang.post(f"/api/v1/cases/{cid}/supplement-requests",
                            json={"items": [{"material": "户口簿", "reason": "缺页"}]})
    assert resp.status == 403
    assert (await api.get(f"/api/v1/cases/{cid}")).status == 401


async def test_input_validation(api: Any) -> None:
    _, zhang, _ = await _setup(api)
    for body in ({}, {"hall_code": "H-XF-000"},
                 {"item_code": "MZ-003", "bundle_code": "YJS-11", "hall_code": "H-XF-000"},
                 {"item_code": "NOPE", "hall_code": "H-XF-000"},
                 {"item_code": "MZ-003", "hall_code": "x" * 33},
                 {"item_code": "MZ-003", "hall_code": "H-XF-000", "applicant_user_id": 0}):
        resp = await zhang.post("/api/v1/cases", json=body)
        assert resp.status == 422, (body, resp.text)
    resp = await zhang.post("/api/v1/cases", json={"bundle_code": "YJS-01",
                                                   "hall_code": "H-XF-000"})
    assert resp.status == 422 and "enterprise_id" in resp.json["error"]["fields"]


async def test_staff_list_and_alerts(api: Any) -> None:
    staff, zhang, _ = await _setup(api)
    cid = (await _open(zhang, item_code="MZ-005"))["id"]
    await _move(staff, cid, "accept")
    from datetime import timedelta

    from services import cases, clock

    await cases.raise_due_alerts(now=clock.now() + timedelta(days=30))
    alerts = (await staff.get("/api/v1/admin/case-alerts", params={"level": "overdue"})).json
    assert [a["case_id"] for a in alerts["alerts"]] == [cid]
    listing = (await staff.get("/api/v1/admin/cases",
                               params={"status": "accepted", "hall_code": "H-XF-000"})).json
    assert [c["id"] for c in listing["cases"]] == [cid]
    bad = await staff.get("/api/v1/admin/cases", params={"limit": "0"})
    assert bad.status == 422


async def test_reopen_over_http(api: Any) -> None:
    staff, zhang, _ = await _setup(api)
    cid = (await _open(zhang))["id"]
    for action in ("accept", "start_review", "reject", "deliver", "close"):
        await _move(staff, cid, action)
    resp = await zhang.post(f"/api/v1/cases/{cid}/reopen", json={"reason": "补充了新的证明"})
    assert resp.status == 200 and resp.json["status"] == "under_review"
    assert resp.json["timeline"][-1]["note"] == "补充了新的证明"
