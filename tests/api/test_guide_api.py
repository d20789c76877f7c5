"""办事指南 / 精准导办 over HTTP: search, guides, bundles, flows, and staff-only edits."""

from __future__ import annotations

import pytest

from miniprogram_stub import demo_accounts
from miniprogram_stub.client import Journeys
from miniprogram_stub.journeys import guide as guide_journeys
from models.users import Role
from services import seed
from services.settings import get_settings

NEW_ITEM = {
    "code": "JT-900", "name": "老年人公交乘车卡办理", "department": "市交通运输局",
    "kind": "公共服务", "subject": "person", "theme": "养老服务",
    "window_kind": "comprehensive", "hall_codes": ["H-QY-000", "H-XF-000"],
    "keywords": ["老年卡", "坐公交免费"],
    "legal_basis": "《庆阳市老年人优待办法》", "conditions": ["年满65周岁"],
    "refusal_cases": ["未满65周岁"],
    "materials": [{"name": "居民身份证", "form": "原件", "copies": 1, "source": "申请人自备",
                   "required": True, "electronic_ok": True,
                   "blank_form_url": "https://example.gov.cn/form.pdf",
                   "sample_url": "https://example.gov.cn/sample.pdf"}],
    "steps": ["申请", "受理", "制卡", "领卡"], "legal_limit_days": 10,
    "promised_limit_days": 0, "visits": 1, "online": "pre", "fee": "不收费",
    "fee_basis": "", "consult_phone": "0934-12345", "complaint_phone": "12345",
    "faq": [{"q": "外地老人可以办吗?", "a": "持居住证可以办理。"}],
}


async def _search(api, q, **params):
    resp = await api.get("/api/v1/guide/search", params={"q": q, **params})
    assert resp.status == 200, resp.text
    return resp.json["results"]


@pytest.mark.parametrize(("q", "expected"), [
    ("身份证丢了怎么办", "GA-002"),  # colloquial
    ("shenfenzheng buling", "GA-002"),  # full pinyin
    ("sbk", "RS-001"),  # initials
    ("户口迁已", "GA-004"),  # IME homophone typo
    ("社保咔丢了", "RS-002"),  # typo + colloquial intent
])
async def test_search_understands_residents(api, q, expected):
    await seed.run()
    results = await _search(api, q, limit=3)
    assert expected in [r["code"] for r in results], results
    assert all({"type", "code", "name"} <= r.keys() for r in results)


async def test_search_finds_bundles_and_filters_by_type(api):
    await seed.run()
    results = await _search(api, "生孩子要办哪些事", limit=5)
    assert {"type": "bundle", "code": "YJS-07"}.items() <= next(
        r for r in results if r["code"] == "YJS-07").items()
    only = await _search(api, "二手房过户", type="bundle")
    assert only and {r["type"] for r in only} == {"bundle"}
    assert await _search(api, "😀😀") == []


async def test_search_validates_its_query(api):
    for params in ({}, {"q": ""}, {"q": "x" * 101}, {"q": "社保", "limit": 0},
                   {"q": "社保", "type": "hall"}):
        resp = await api.get("/api/v1/guide/search", params=params)
        assert resp.status == 422, (params, resp.text)
        assert resp.json["error"]["code"] == "validation_failed"


async def test_item_guide_has_every_element_in_one_call(api):
    await seed.run()
    resp = await api.get("/api/v1/guide/items/BD-001")
    assert resp.status == 200, resp.text
    g = resp.json
    for key in ("code", "name", "department", "window", "kind", "subject", "legal_basis",
                "conditions", "refusal_cases", "materials", "steps", "legal_limit_days",
                "promised_limit_days", "handling_type", "visits", "online", "fee",
                "fee_basis", "halls", "consult_phone", "complaint_phone", "faq"):
        assert key in g, key
    assert g["time_limit_unit"] == "working_days"
    assert g["handling_type"] in ("即办件", "承诺件")
    assert g["halls"] and {"open_now", "hours", "marker"} <= g["halls"][0].keys()
    assert [b["code"] for b in g["bundles"]] == ["YJS-12"]
    assert (await api.get("/api/v1/guide/items/NOPE-1")).status == 404


async def test_browse_by_theme_subject_department_hall(api):
    await seed.run()
    facets = (await api.get("/api/v1/guide/facets")).json
    assert {"value": "不动产", "count": 4} in facets["themes"]
    resp = await api.get("/api/v1/guide/items", params={"theme": "不动产", "limit": 3})
    assert [i["code"] for i in resp.json["items"]] == ["BD-001", "BD-002", "BD-003"]
    nxt = resp.json["next_after"]
    resp = await api.get("/api/v1/guide/items", params={"theme": "不动产", "after": nxt})
    assert [i["code"] for i in resp.json["items"]] == ["BD-004"]
    resp = await api.get("/api/v1/guide/items", params={"hall": "H-QY-GJJ", "limit": 100})
    assert {i["code"] for i in resp.json["items"]} >= {"GJ-001", "GJ-002"}
    resp = await api.get("/api/v1/guide/items",
                         params={"subject": "enterprise", "department": "市市场监管局"})
    assert resp.json["items"] and all(i["subject"] == "enterprise" for i in resp.json["items"])
    assert (await api.get("/api/v1/guide/items", params={"subject": "alien"})).status == 422


async def test_bundle_materials_are_one_set(api):
    await seed.run()
    resp = await api.get("/api/v1/guide/bundles/YJS-12")
    assert resp.status == 200, resp.text
    b = resp.json
    names = [m["name"] for m in b["materials"]]
    assert len(names) == len(set(names))
    idcard = next(m for m in b["materials"] if m["name"] == "居民身份证")
    assert idcard["needed_by"] == ["BD-001", "GY-001", "GY-002", "GY-003", "GY-004"]
    assert b["materials_if_separate"] > len(b["materials"])
    listed = (await api.get("/api/v1/guide/bundles", params={"subject": "person"})).json
    assert "YJS-12" in [x["code"] for x in listed["bundles"]]
    assert (await api.get("/api/v1/guide/bundles/YJS-999")).status == 404


async def test_guided_flow_over_http(api):
    await seed.run()
    flows = (await api.get("/api/v1/guide/flows")).json["flows"]
    assert {"huji", "shebao", "budongchan", "shichang"} <= {f["code"] for f in flows}
    full = (await api.get("/api/v1/guide/flows/shichang")).json
    assert full["graph"]["questions"][full["graph"]["start"]]["text"] == "为本人还是为企业办理?"
    step = (await api.post("/api/v1/guide/flows/shichang/walk", json={"answers": []})).json
    assert step["done"] is False and step["question"]["text"] == "为本人还是为企业办理?"
    step = (await api.post("/api/v1/guide/flows/shichang/walk",
                           json={"answers": [0, 0]})).json
    assert step["done"] is True and step["destination"] == {
        "type": "bundle", "code": "YJS-03", "name": "开办餐饮店一件事"}
    bad = await api.post("/api/v1/guide/flows/shichang/walk", json={"answers": [7]})
    assert bad.status == 422 and "answers.0" in bad.json["error"]["fields"]
    assert (await api.post("/api/v1/guide/flows/nope/walk", json={})).status == 404
    assert (await api.post("/api/v1/guide/flows/huji/walk",
                           json={"answers": ["x"]})).status == 422


async def test_staff_create_item_is_searchable_at_once(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    resp = await staff.post("/api/v1/admin/guide/items", json=NEW_ITEM)
    assert resp.status == 201, resp.text
    assert resp.json["handling_type"] == "即办件"
    assert resp.json["materials"][0]["blank_form_url"].endswith("form.pdf")
    assert (await _search(api, "老年卡"))[0]["code"] == "JT-900"
    again = await staff.post("/api/v1/admin/guide/items", json=NEW_ITEM)
    assert again.status == 409

    body = {k: v for k, v in NEW_ITEM.items() if k != "code"} | {"name": "老年人免费乘车卡"}
    resp = await staff.put("/api/v1/admin/guide/items/JT-900", json=body)
    assert resp.status == 200 and resp.json["name"] == "老年人免费乘车卡"
    assert (await _search(api, "免费乘车卡"))[0]["name"] == "老年人免费乘车卡"

    resp = await staff.delete("/api/v1/admin/guide/items/JT-900")
    assert resp.status == 200 and resp.json == {"code": "JT-900", "active": False}
    assert "JT-900" not in [r["code"] for r in await _search(api, "老年卡")]
    assert (await api.get("/api/v1/guide/items/JT-900")).status == 404


async def test_staff_edits_are_validated(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    bad_halls = NEW_ITEM | {"hall_codes": ["H-NOWHERE"]}
    resp = await staff.post("/api/v1/admin/guide/items", json=bad_halls)
    assert resp.status == 422 and "hall_codes" in resp.json["error"]["fields"]
    for broken in ({"legal_limit_days": -1}, {"subject": "alien"}, {"window_kind": "x"},
                   {"materials": [{"name": "x", "form": "手抄本"}]}, {"unknown": 1}):
        resp = await staff.post("/api/v1/admin/guide/items", json=NEW_ITEM | broken)
        assert resp.status == 422, broken
    resp = await staff.put("/api/v1/admin/guide/items/NOPE-1",
                           json={k: v for k, v in NEW_ITEM.items() if k != "code"})
    assert resp.status == 404
    resp = await staff.put("/api/v1/admin/guide/bundles/YJS-50", json={
        "name": "老年人一件事", "subject": "person", "item_codes": ["MZ-004", "NOPE-2"]})
    assert resp.status == 422
    resp = await staff.put("/api/v1/admin/guide/bundles/YJS-50", json={
        "name": "老年人一件事", "subject": "person", "item_codes": ["MZ-004", "MZ-005"]})
    assert resp.status == 200 and resp.json["item_count"] == 2
    assert "YJS-50" in [r["code"] for r in await _search(api, "老年人一件事", type="bundle")]


async def test_staff_replace_flow_with_validation(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    cyclic = {"title": "不动产导办", "theme": "不动产", "graph": {"start": "a", "questions": {
        "a": {"text": "第一问?", "options": [{"label": "下一步", "next": "b"},
                                          {"label": "查询", "item": "BD-004"}]},
        "b": {"text": "第二问?", "options": [{"label": "回去", "next": "a"},
                                          {"label": "过户", "item": "BD-001"}]}}}}
    resp = await staff.put("/api/v1/admin/guide/flows/budongchan", json=cyclic)
    assert resp.status == 422 and "questions" in resp.json["error"]["fields"]
    fixed = cyclic | {"graph": {"start": "a", "questions": {
        "a": cyclic["graph"]["questions"]["a"],
        "b": {"text": "第二问?", "options": [{"label": "只过户", "item": "BD-001"},
                                          {"label": "联动过户", "bundle": "YJS-12"}]}}}}
    resp = await staff.put("/api/v1/admin/guide/flows/budongchan", json=fixed)
    assert resp.status == 200 and resp.json["revision"] == 2
    step = (await api.post("/api/v1/guide/flows/budongchan/walk",
                           json={"answers": [0, 1]})).json
    assert step["destination"]["code"] == "YJS-12"
    resp = await staff.put("/api/v1/admin/guide/flows/BAD CODE", json=fixed)
    assert resp.status == 422


async def test_admin_guide_endpoints_refuse_residents_and_anonymous(api):
    await seed.run()
    resident = await api.login("resident-1")
    body = {k: v for k, v in NEW_ITEM.items() if k != "code"}
    flow = {"title": "测试", "theme": "测试", "graph": {"start": "a", "questions": {"a": {
        "text": "问?", "options": [{"label": "1", "item": "GA-001"},
                                   {"label": "2", "item": "GA-002"}]}}}}
    calls = [
        ("POST", "/api/v1/admin/guide/items", NEW_ITEM),
        ("PUT", "/api/v1/admin/guide/items/GA-001", body),
        ("DELETE", "/api/v1/admin/guide/items/GA-001", None),
        ("PUT", "/api/v1/admin/guide/bundles/YJS-01",
         {"name": "企业一件事", "subject": "enterprise", "item_codes": ["SJ-003"]}),
        ("PUT", "/api/v1/admin/guide/flows/huji", flow),
    ]
    for method, path, json in calls:
        resp = await resident.api.request(method, path, token=resident.token, json=json)
        assert resp.status == 403, (method, path, resp.text)
        resp = await api.request(method, path, json=json)
        assert resp.status == 401, (method, path)
    # Nothing changed.
    assert (await api.get("/api/v1/guide/items/GA-001")).status == 200
    assert (await api.get("/api/v1/guide/flows/huji")).json["revision"] == 1


async def test_resident_journeys_walk_in_process(api):
    """The scripted client's 导办 journeys (search -> guide -> nearest hall, guided Q&A,
    policies for me), driven over ASGI so they run without a live server."""
    await seed.run()
    await demo_accounts.seed(get_settings().wechat_appid)
    j = Journeys(api.http)
    for journey in guide_journeys.JOURNEYS:
        await journey(j)


async def test_odd_paths_and_lax_json_are_refused_cleanly(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    long_code = "%F0%B5%AE%B7" * 9  # longer than any code column once left percent-encoded
    for path in (f"/api/v1/guide/items/{long_code}", f"/api/v1/guide/bundles/{long_code}",
                 f"/api/v1/guide/flows/{long_code}", f"/api/v1/map/halls/{long_code}"):
        assert (await api.get(path)).status == 404, path
    resp = await staff.delete(f"/api/v1/admin/guide/items/{long_code}")
    assert resp.status == 404
    body = {k: v for k, v in NEW_ITEM.items() if k != "code"}
    assert (await staff.put(f"/api/v1/admin/guide/items/{long_code}", json=body)).status == 404
    # JSON false is not answer 0, and true is not one visit.
    resp = await api.post("/api/v1/guide/flows/huji/walk", json={"answers": [False]})
    assert resp.status == 422
    resp = await staff.post("/api/v1/admin/guide/items", json=NEW_ITEM | {"visits": True})
    assert resp.status == 422 and "visits" in resp.json["error"]["fields"]
