"""一码通 over HTTP: shapes, formats, statuses, and who may do what."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from api.codes import ScanOut
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Role
from services import cache
from tests.conftest import Api
from tests.unit.test_codes import AGENT_USCC, LI, ZHANG, rasterise_svg, seed_demo


def decode(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def scan_body(resp: Any) -> dict[str, Any]:
    """A scan's answer is sent as the service spliced it from cached JSON, never through the
    response model: it must be exactly what ScanOut (the OpenAPI document) says, no more."""
    assert resp.status == 200, resp.text
    sent = json.loads(resp.body)
    assert sent == ScanOut.model_validate_json(resp.body).model_dump(mode="json",
                                                                     exclude_unset=True)
    return dict(sent)


async def test_my_code_json_png_and_svg(api: Api) -> None:
    await seed_demo()
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", ZHANG)
    resp = await zhang.get("/api/v1/me/code")
    assert resp.status == 200, resp.text
    body = resp.json
    assert resp.headers["cache-control"] == "no-store"
    assert body["content"].startswith("https://bangban.qingyang.gov.cn/c/P")
    assert body["expires_at"].endswith("+08:00")
    assert body["refresh_after_seconds"] == 50
    assert decode(base64.b64decode(body["png_base64"])) == [body["content"]]
    assert [r.text for r in zxingcpp.read_barcodes(rasterise_svg(body["svg"]))] == \
        [body["content"]]
    png = await zhang.get("/api/v1/me/code", params={"format": "png"})
    assert png.status == 200 and png.headers["content-type"] == "image/png"
    [content] = decode(png.body)
    assert content.startswith("https://bangban.qingyang.gov.cn/c/P")
    assert content != body["content"]  # every fetch is a new code
    svg = await zhang.get("/api/v1/me/code", params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    bad = await zhang.get("/api/v1/me/code", params={"format": "gif"})
    assert bad.status == 422 and "format" in bad.json["error"]["fields"]


async def test_my_code_needs_login_and_identity(api: Api) -> None:
    assert (await api.get("/api/v1/me/code")).status == 401
    newcomer = await api.login("newcomer")
    resp = await newcomer.get("/api/v1/me/code")
    assert resp.status == 409 and resp.json["error"]["code"] == "identity_required"


async def test_staff_scan_and_resident_sees_who_scanned(api: Api) -> None:
    await seed_demo()
    li = await api.login("li")
    await li.bind_identity("李秀兰", LI)
    staff = await api.login("staff-1", Role.staff, hall="H-QY-000")
    content = (await li.get("/api/v1/me/code")).json["content"]
    # The hall the client claims is ignored: the watermark names the scanner's own hall.
    resp = await staff.post("/api/v1/codes/scan", json={"content": content,
                                                        "hall_code": "H-XF-000"})
    body = scan_body(resp)
    assert body["kind"] == "person" and set(body) == {"scan_id", "kind", "scanned_at", "person"}
    person = body["person"]
    assert person["identity"]["id_number"] == "6210**********0426"
    assert [lic["kind"] for lic in person["licences"]] == ["identity_card", "disability_cert"]
    assert person["licences"][0]["issued_on"] is None
    # A resident's phone can't read someone's person code.
    wang = await api.login("wang")
    denied = await wang.post("/api/v1/codes/scan", json={"content": content})
    assert denied.status == 403
    scans = (await li.get("/api/v1/me/code/scans")).json
    assert [(s["scanner_role"], s["scanner_org"], s["outcome"]) for s in scans["scans"]] == [
        ("居民", "", "forbidden"), ("窗口工作人员", "庆阳市政务服务中心", "ok")]
    assert all("scanner_id" not in s and "user_id" not in s for s in scans["scans"])
    # Wang's own list holds none of Li's scans.
    assert (await wang.get("/api/v1/me/code/scans")).json == {"scans": [], "next_cursor": None}
    huge = await li.get("/api/v1/me/code/scans", params={"cursor": 2**64})
    assert huge.status == 422
    page = (await li.get("/api/v1/me/code/scans", params={"limit": 1})).json
    assert len(page["scans"]) == 1 and page["next_cursor"] is not None
    rest = (await li.get("/api/v1/me/code/scans",
                         params={"limit": 1, "cursor": page["next_cursor"]})).json
    assert rest["scans"][0]["outcome"] == "ok"


async def test_scan_errors(api: Api) -> None:
    await seed_demo()
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", ZHANG)
    staff = await api.login("staff-1", Role.staff)
    content = (await zhang.get("/api/v1/me/code")).json["content"]
    await cache.redis().flushdb()
    expired = await staff.post("/api/v1/codes/scan", json={"content": content})
    assert expired.status == 410
    assert expired.json["error"]["code"] == "code_expired"
    assert "请刷新二维码" in expired.json["error"]["message"]
    edited = content[:-3] + ("AAA" if not content.endswith("AAA") else "BBB")
    tampered = await staff.post("/api/v1/codes/scan", json={"content": edited})
    assert tampered.status == 404 and tampered.json["error"]["code"] == "code_unrecognised"
    bad: dict[str, Any]
    for bad in ({}, {"content": ""}, {"content": "x" * 513}, {"content": 5}):
        resp = await staff.post("/api/v1/codes/scan", json=bad)
        assert resp.status == 422, (bad, resp.text)
    assert (await api.post("/api/v1/codes/scan", json={"content": content})).status == 401


async def test_enterprise_code_lifecycle_and_authorization(api: Api, fake_wechat: Any) -> None:
    await seed_demo()
    ent = await Enterprise.get(uscc=AGENT_USCC)
    other = await Enterprise.get(uscc="91621000MA701QY91T")
    agent = await api.login("agent-1", Role.enterprise_agent)
    await EnterpriseAgent.create(enterprise=ent, user_id=agent.user_id)
    created = await agent.post(f"/api/v1/codes/enterprises/{ent.id}")
    assert created.status == 201, created.text
    assert created.json["expires_at"] is None
    assert decode(base64.b64decode(created.json["png_base64"])) == [created.json["content"]]
    got = await agent.get(f"/api/v1/codes/enterprises/{ent.id}")
    assert got.json["content"] == created.json["content"]
    png = await agent.get(f"/api/v1/codes/enterprises/{ent.id}", params={"format": "png"})
    assert decode(png.body) == [created.json["content"]]
    # The agent of one firm can't touch another firm's code; a resident can't touch any.
    resident = await api.login("resident-1")
    for who, eid in ((agent, other.id), (resident, ent.id), (agent, 999999), (agent, 2**64)):
        for method in ("get", "post", "delete"):
            resp = await getattr(who, method)(f"/api/v1/codes/enterprises/{eid}")
            assert resp.status == 404, (method, eid, resp.text)
        assert (await who.get(f"/api/v1/codes/enterprises/{eid}/wxacode")).status == 404
    # Anyone scans it and sees the public profile; the agent sees more.
    public = scan_body(await resident.post("/api/v1/codes/scan",
                                           json={"content": created.json["content"]}))
    assert set(public["enterprise"]) == {"id", "name", "uscc", "industry", "county", "licences"}
    mine = scan_body(await agent.post("/api/v1/codes/scan",
                                      json={"content": created.json["content"]}))
    assert {"policies", "cases"} <= set(mine["enterprise"])
    # Mini-program code: scene is the token (<= 32 chars), fetched once then served from Redis.
    wxa = await agent.get(f"/api/v1/codes/enterprises/{ent.id}/wxacode")
    assert wxa.status == 200 and wxa.headers["content-type"] == "image/png"
    again = await agent.get(f"/api/v1/codes/enterprises/{ent.id}/wxacode")
    assert again.body == wxa.body
    assert len(fake_wechat.wxacodes) == 1
    scene = fake_wechat.wxacodes[0]["scene"]
    assert len(scene) <= 32 and created.json["content"].endswith("/c/" + scene)
    by_scene = await resident.post("/api/v1/codes/scan", json={"content": scene})
    assert by_scene.json["kind"] == "enterprise"
    staff = await api.login("staff-1", Role.staff)
    assert (await staff.get(f"/api/v1/codes/enterprises/{ent.id}")).status == 200
    assert (await agent.delete(f"/api/v1/codes/enterprises/{ent.id}")).json == {"ok": True}
    revoked = await resident.post("/api/v1/codes/scan", json={"content": created.json["content"]})
    assert revoked.status == 410 and revoked.json["error"]["code"] == "code_revoked"
    assert (await agent.get(f"/api/v1/codes/enterprises/{ent.id}")).status == 404


async def test_doorplate_batch_sheet_and_views(api: Api, fake_wechat: Any) -> None:
    await seed_demo()
    staff = await api.login("staff-1", Role.staff)
    resident = await api.login("resident-1")
    worker = await api.login("worker-1", Role.community_worker)
    from miniprogram_stub.demo_accounts import GRID
    from services.onbehalf import assign_grid_worker

    await assign_grid_worker(user_id=worker.user_id, **GRID)
    plates = ["D-XF-0001", "D-XF-0002", "D-XF-0003"]
    for who in (resident, worker):
        assert (await who.post("/api/v1/codes/doorplates/batch",
                               json={"plate_codes": plates})).status == 403
        assert (await who.get("/api/v1/codes/doorplates/sheet",
                              params={"plate_codes": plates})).status == 403
        assert (await who.delete("/api/v1/codes/doorplates/D-XF-0001")).status == 403
    made = await staff.post("/api/v1/codes/doorplates/batch", json={"plate_codes": plates})
    assert made.status == 200, made.text
    contents = {c["plate_code"]: c["content"] for c in made.json["codes"]}
    assert all(c["newly_issued"] for c in made.json["codes"])
    sheet = await staff.get("/api/v1/codes/doorplates/sheet", params={"plate_codes": plates})
    assert sheet.status == 200 and sheet.headers["content-type"] == "image/png"
    assert sheet.headers["x-label-font"] == "cjk"  # the bundled font, whatever the machine has
    assert sorted(decode(sheet.body)) == sorted(contents.values())
    bad_batches: list[dict[str, Any]] = [
        {"plate_codes": []}, {"plate_codes": ["含中文"]}, {"plate_codes": "D-XF-0001"},
        {"plate_codes": ["D"] * 201}]
    for batch in bad_batches:
        assert (await staff.post("/api/v1/codes/doorplates/batch", json=batch)).status == 422
    missing = await staff.post("/api/v1/codes/doorplates/batch", json={"plate_codes": ["D-NO"]})
    assert missing.status == 404
    lacking = await staff.get("/api/v1/codes/doorplates/sheet",
                              params={"plate_codes": ["D-QC-0001"]})
    assert lacking.status == 409
    public = scan_body(await resident.post(
        "/api/v1/codes/scan", json={"content": contents["D-XF-0001"]}))["doorplate"]
    assert "households" not in public and public["grid_worker"]["phone"] == "0934-8212345"
    mine = scan_body(await worker.post(
        "/api/v1/codes/scan", json={"content": contents["D-XF-0001"]}))["doorplate"]
    assert [h["relation"] for h in mine["households"]] == ["户主", "孙子"]
    wxa = await staff.get("/api/v1/codes/doorplates/D-XF-0001/wxacode")
    assert wxa.status == 200 and wxa.headers["content-type"] == "image/png"
    assert (await staff.get("/api/v1/codes/doorplates/D-QC-0001/wxacode")).status == 404
    assert (await staff.delete("/api/v1/codes/doorplates/D-XF-0001")).status == 200
    assert (await staff.delete("/api/v1/codes/doorplates/D-XF-0001")).status == 404
    for odd in ("X%0D%C2%BD", "D" * 40):
        assert (await staff.delete(f"/api/v1/codes/doorplates/{odd}")).status == 404
        assert (await staff.get(f"/api/v1/codes/doorplates/{odd}/wxacode")).status == 404
    gone = await resident.post("/api/v1/codes/scan", json={"content": contents["D-XF-0001"]})
    assert gone.status == 410


async def test_scan_rate_limit_over_http(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.settings import get_settings

    monkeypatch.setattr(get_settings(), "scan_rate_limit", 2)
    resident = await api.login("resident-1")
    for _ in range(2):
        assert (await resident.post("/api/v1/codes/scan", json={"content": "junk"})).status == 404
    limited = await resident.post("/api/v1/codes/scan", json={"content": "junk"})
    assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1


async def test_openapi_documents_the_code_routes(api: Api) -> None:
    doc = (await api.get("/docs/openapi.json")).json
    me_code = doc["paths"]["/api/v1/me/code"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "image/png", "image/svg+xml"} <= set(me_code)
    scan = doc["paths"]["/api/v1/codes/scan"]["post"]["responses"]
    assert "410" in scan and "429" in scan
    sheet = doc["paths"]["/api/v1/codes/doorplates/sheet"]["get"]["responses"]["200"]["content"]
    assert "image/png" in sheet


async def test_the_scan_route_guards_and_refuses_like_every_endpoint_route(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /codes/scan skips @endpoint's generic layers for speed (api/codes.py) but must
    answer every refusal as an @endpoint route does: compared here with one that has a body."""
    await seed_demo()
    resident = await api.login("resident-1")
    scan, other = "/api/v1/codes/scan", "/api/v1/proxy-authorizations"

    async def both(**kw: Any) -> tuple[Any, Any]:
        return await api.post(scan, **kw), await api.post(other, **kw)

    auth = {"Authorization": f"Bearer {resident.token}"}
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 401),  # no token
        ({"headers": {"Authorization": "Bearer not-a-token"}}, 401),
        ({"headers": {**auth, "Content-Type": "text/plain"}, "data": "x"}, 415),
        ({"headers": {**auth, "Content-Type": "application/json"}, "data": "{nope"}, 400),
        ({"headers": auth, "json": [1, 2]}, 422),
    ]
    for kw, status in cases:
        mine, theirs = await both(**kw)
        assert mine.status == theirs.status == status, (kw, mine.text, theirs.text)
        assert mine.json == theirs.json, kw
        assert set(mine.json) == {"error"} and set(mine.json["error"]) == {
            "code", "message", "fields"}
        assert mine.headers.get("x-request-id")
    wrong_type = await resident.post(scan, json={"content": 5})
    assert wrong_type.status == 422
    assert wrong_type.json["error"]["fields"] == {"content": "应为文本"}
    ok = await resident.post(scan, json={"content": "junk"})
    assert ok.status == 404 and ok.json["error"]["code"] == "code_unrecognised"
    # A success is private to its caller, like every signed-in route's.
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", ZHANG)
    staff = await api.login("staff-1", Role.staff)
    content = (await zhang.get("/api/v1/me/code")).json["content"]
    seen = await staff.post(scan, json={"content": content})
    assert seen.status == 200 and seen.headers["cache-control"] == "no-store"
    # The request deadline holds here too: a scan that stalls (a dependency that stops
    # answering) is a bounded 503, not a hung request.
    from services import codes, settings

    async def stalls(**_kw: Any) -> None:
        await asyncio.sleep(5)

    monkeypatch.setattr(settings.get_settings(), "request_deadline_seconds", 0.2)
    monkeypatch.setattr(codes, "scan", stalls)
    late = await staff.post(scan, json={"content": content})
    assert late.status == 503 and late.json["error"]["code"] == "unavailable"
    assert late.headers["retry-after"] == "5"


async def test_a_revoked_staff_role_sees_no_person_through_the_scan(api: Api) -> None:
    """The token still names the role for its lifetime; the scan route narrows it to the roles
    the account holds, as every route does."""
    await seed_demo()
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", ZHANG)
    admin = await api.login("admin-1", Role.admin)
    staff = await api.login("staff-1", Role.staff)
    content = (await zhang.get("/api/v1/me/code")).json["content"]
    assert (await staff.post("/api/v1/codes/scan", json={"content": content})).status == 200
    resp = await admin.delete(f"/api/v1/admin/users/{staff.user_id}/roles/staff")
    assert resp.status == 200
    denied = await staff.post("/api/v1/codes/scan", json={"content": content})
    assert denied.status == 403 and denied.json["error"]["code"] == "forbidden"


async def test_concurrent_scans_each_get_their_own_answer(api: Api) -> None:
    """Scans in flight together share the Redis lane's connection and its writes (on a real
    Redis): every answer must still be the one for the code its scanner sent."""
    await seed_demo()
    staff = await api.login("staff-1", Role.staff)
    people = {}
    for code, name, number in (("zhang", "张建国", ZHANG), ("li", "李秀兰", LI)):
        who = await api.login(code)
        await who.bind_identity(name, number)
        people[(await who.get("/api/v1/me/code")).json["content"]] = number[:4]
    plates = ["D-XF-0001", "D-XF-0002", "D-XF-0003"]
    made = await staff.post("/api/v1/codes/doorplates/batch", json={"plate_codes": plates})
    sent = [*people, *(c["content"] for c in made.json["codes"])] * 10
    by_content = {c["content"]: c["plate_code"] for c in made.json["codes"]}
    answers = await asyncio.gather(*(staff.post("/api/v1/codes/scan", json={"content": c})
                                     for c in sent))
    ids = set()
    for content, resp in zip(sent, answers, strict=True):
        body = scan_body(resp)
        ids.add(body["scan_id"])
        if content in people:
            assert body["person"]["identity"]["id_number"].startswith(people[content])
        else:
            assert body["doorplate"]["code"] == by_content[content]
    assert len(ids) == len(sent)
