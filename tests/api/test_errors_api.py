"""One error envelope for everything that can go wrong, and never a 500 for bad input."""

import re

import pytest


def assert_envelope(resp, status, code=None):
    assert resp.status == status, resp.text
    err = resp.json["error"]
    assert set(err) >= {"code", "message", "fields"}
    assert isinstance(err["fields"], dict)
    if code:
        assert err["code"] == code
    assert "Traceback" not in resp.text


async def test_unknown_route_is_404_envelope(api):
    assert_envelope(await api.get("/api/v1/nope"), 404, "route_not_found")


async def test_wrong_method_is_405_envelope(api):
    assert_envelope(await api.delete("/api/v1/auth/wechat-login"), 405, "method_not_allowed")


async def test_malformed_json_is_400(api):
    resp = await api.post("/api/v1/auth/wechat-login", data="{not json",
                          headers={"content-type": "application/json"})
    assert_envelope(resp, 400, "bad_request")


@pytest.mark.parametrize("payload", [[], "code", 1, None, {"code": ""}, {"code": 5}, {}])
async def test_invalid_body_is_422_with_fields(api, payload):
    resp = await api.post("/api/v1/auth/wechat-login", json=payload)
    assert_envelope(resp, 422, "validation_failed")
    assert resp.json["error"]["fields"]


async def test_field_messages_are_chinese(api):
    resp = await api.post("/api/v1/auth/wechat-login", json={})
    assert resp.json["error"]["fields"] == {"code": "必填"}


async def test_bad_query_is_422(api):
    from models.users import Role

    admin = await api.login("root", Role.admin)
    resp = await admin.get("/api/v1/admin/users", params={"limit": "lots"})
    assert_envelope(resp, 422, "validation_failed")
    assert "limit" in resp.json["error"]["fields"]


async def test_request_id_is_echoed_when_sane(api):
    resp = await api.get("/healthz", headers={"X-Request-Id": "trace-1234abcd"})
    assert resp.headers["x-request-id"] == "trace-1234abcd"
    evil = await api.get("/healthz", headers={"X-Request-Id": "x\r\nSet-Cookie: a"})
    assert evil.headers["x-request-id"] != "x\r\nSet-Cookie: a"


async def test_readyz_reports_dependencies(api):
    resp = await api.get("/readyz")
    assert resp.status == 200
    assert resp.json == {"status": "ok", "database": True, "redis": True, "workers": True,
                         "down": []}


async def test_openapi_documents_every_api_route(api, app):
    spec = (await api.get("/docs/openapi.json")).json
    assert spec["openapi"] == "3.1.0"  # what pydantic v2 schemas are
    documented = set(spec["paths"])
    for route in app.router.routes:
        path = "/" + route.path
        if path.startswith("/api/"):
            openapi_path = re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", path)
            assert openapi_path in documented, f"{path} is not in the OpenAPI document"
    login = spec["paths"]["/api/v1/auth/wechat-login"]["post"]
    assert "requestBody" in login
    assert "200" in login["responses"] and "422" in login["responses"]


async def test_impossible_path_ids_are_404_not_500(api):
    from models.users import Role

    staff = await api.login("clerk", Role.staff)
    huge = await staff.post("/api/v1/admin/persons/61633105627737650888704/reveal",
                            json={"reason": "核验身份信息"})
    assert_envelope(huge, 404, "not_found")
    admin = await api.login("root", Role.admin)
    long_role = await admin.delete(f"/api/v1/admin/users/{admin.user_id}/roles/{'x' * 80}")
    assert_envelope(long_role, 404, "not_found")


async def test_integers_beyond_bigint_are_422_not_500(api):
    from models.users import Role

    admin = await api.login("root", Role.admin)
    resp = await admin.get("/api/v1/admin/audit", params={"cursor": 2259924245239954931712})
    assert_envelope(resp, 422, "validation_failed")
    assert resp.json["error"]["fields"] == {"cursor": "数值超出范围"}
