async def test_healthz(api):
    resp = await api.get("/healthz")
    assert resp.status == 200
    assert resp.json == {"status": "ok"}
    assert len(resp.headers["x-request-id"]) >= 8


async def test_login_and_me(api):
    s = await api.login("alice")
    resp = await s.get("/api/v1/me")
    assert resp.status == 200, resp.text
    assert resp.json["roles"] == ["resident"]
