"""政策推送 over HTTP: for-me by profile and by enterprise, staff publishing and the push."""

from __future__ import annotations

from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Role
from services import outbox, seed

POLICY = {"code": "P-800", "title": "八十岁以上老人体检补贴", "department": "市卫生健康委",
          "theme": "养老服务", "audience": "person", "criteria": {"min_age": 80},
          "summary": "每年一次免费体检。"}


async def _agent(api, code: str, uscc: str):
    s = await api.login(code, Role.enterprise_agent)
    await EnterpriseAgent.get_or_create(user_id=s.user_id,
                                        enterprise=await Enterprise.get(uscc=uscc))
    return s


async def test_for_me_by_person_profile(api):
    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", "621002194103050316")
    li = await api.login("li")
    await li.bind_identity("李秀兰", "621021197508120426")
    got = (await zhang.get("/api/v1/policies/for-me")).json["policies"]
    assert [(p["code"], p["for_me"]) for p in got] == [("P-001", True)]
    got = (await li.get("/api/v1/policies/for-me")).json["policies"]
    assert [p["code"] for p in got] == ["P-002"]
    stranger = await api.login("no-identity")
    assert (await stranger.get("/api/v1/policies/for-me")).json == {"policies": []}
    assert (await api.get("/api/v1/policies/for-me")).status == 401


async def test_for_me_by_enterprise_shows_only_my_enterprises(api):
    await seed.run()
    catering = await _agent(api, "agent-1", "91621000MA700QY00N")
    transport = await _agent(api, "agent-2", "91621000MA701QY91T")
    mine = (await catering.get("/api/v1/policies/for-me")).json["policies"]
    assert sorted(p["code"] for p in mine) == ["P-007", "P-009"]
    assert all(p["for_me"] is False and [e["name"] for e in p["enterprises"]]
               == ["庆阳市示范餐饮有限公司"] for p in mine)
    theirs = (await transport.get("/api/v1/policies/for-me")).json["policies"]
    assert [p["code"] for p in theirs] == ["P-007"]
    assert all(e["name"] != "庆阳市示范餐饮有限公司" for p in theirs for e in p["enterprises"])


async def test_staff_publish_pushes_once_in_the_background(api, fake_wechat):
    await seed.run()
    zhang = await api.login("zhang")
    await zhang.bind_identity("张建国", "621002194103050316")
    resp = await zhang.post("/api/v1/me/subscriptions",
                            json={"template": "policy_published", "accepted": True})
    assert resp.status == 200, resp.text
    staff = await api.login("staff-1", Role.staff)
    resp = await staff.post("/api/v1/admin/policies", json=POLICY)
    assert resp.status == 201, resp.text
    pid = resp.json["id"]
    assert resp.json["status"] == "draft"
    # A draft is invisible to residents, by id or in their list.
    assert (await zhang.get(f"/api/v1/policies/{pid}")).status == 404
    assert "P-800" not in [p["code"] for p in
                           (await zhang.get("/api/v1/policies/for-me")).json["policies"]]

    for _ in range(2):  # a double-clicked publish
        resp = await staff.post(f"/api/v1/admin/policies/{pid}/publish")
        assert resp.status == 200 and resp.json["status"] == "published"
    assert fake_wechat.sent_messages == []  # not inside the request
    await outbox.dispatch_due()
    await outbox.dispatch_due()
    assert [m["touser"] for m in fake_wechat.sent_messages] == [fake_wechat.openid_for("zhang")]
    assert (await zhang.get(f"/api/v1/policies/{pid}")).json["title"] == POLICY["title"]
    assert "P-800" in [p["code"] for p in
                       (await zhang.get("/api/v1/policies/for-me")).json["policies"]]


async def test_staff_policy_validation_and_listing(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    for bad in ({"criteria": {"size": ["micro"]}}, {"criteria": {"min_age": "old"}},
                {"audience": "martian"}, {"code": "has space"}, {"title": ""}):
        resp = await staff.post("/api/v1/admin/policies", json=POLICY | bad)
        assert resp.status == 422, (bad, resp.text)
    assert (await staff.post("/api/v1/admin/policies", json=POLICY)).status == 201
    assert (await staff.post("/api/v1/admin/policies", json=POLICY)).status == 409
    page = (await staff.get("/api/v1/admin/policies", params={"limit": 5})).json
    assert len(page["policies"]) == 5 and page["next_cursor"]
    drafts = (await staff.get("/api/v1/admin/policies", params={"status": "draft"})).json
    assert [p["code"] for p in drafts["policies"]] == ["P-800"]
    assert (await staff.get("/api/v1/admin/policies/99999999999999999999999")).status == 404
    assert (await api.get("/api/v1/policies/99999999999999999999999")).status == 404


async def test_admin_policy_endpoints_refuse_residents(api):
    await seed.run()
    staff = await api.login("staff-1", Role.staff)
    pid = (await staff.post("/api/v1/admin/policies", json=POLICY)).json["id"]
    resident = await api.login("resident-1")
    body = {k: v for k, v in POLICY.items() if k != "code"}
    calls = [("GET", "/api/v1/admin/policies", None), ("POST", "/api/v1/admin/policies", POLICY),
             ("GET", f"/api/v1/admin/policies/{pid}", None),
             ("PUT", f"/api/v1/admin/policies/{pid}", body),
             ("POST", f"/api/v1/admin/policies/{pid}/publish", None),
             ("POST", f"/api/v1/admin/policies/{pid}/withdraw", None)]
    for method, path, json in calls:
        resp = await api.request(method, path, token=resident.token, json=json)
        assert resp.status == 403, (method, path)
        assert (await api.request(method, path, json=json)).status == 401
    # Still a draft: the resident's publish did nothing.
    assert (await staff.get(f"/api/v1/admin/policies/{pid}")).json["status"] == "draft"
    assert (await outbox.dispatch_due()) == 0


async def test_theme_muting_is_per_user(api):
    await seed.run()
    a = await api.login("resident-a")
    b = await api.login("resident-b")
    resp = await a.put("/api/v1/policies/muted-themes", json={"theme": "就业创业", "muted": True})
    assert resp.status == 200 and resp.json == {"themes": ["就业创业"]}
    assert (await b.get("/api/v1/policies/muted-themes")).json == {"themes": []}
    assert (await a.get("/api/v1/policies/muted-themes")).json == {"themes": ["就业创业"]}
    bad = await a.put("/api/v1/policies/muted-themes", json={"theme": "就业创业", "muted": 1})
    assert bad.status == 422
    assert (await api.get("/api/v1/policies/muted-themes")).status == 401
    assert (await api.put("/api/v1/policies/muted-themes",
                          json={"theme": "x", "muted": True})).status == 401
