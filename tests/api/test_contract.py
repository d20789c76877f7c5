"""The API contract the mini-program team builds on: one class per schema name, Chinese tags
and responses, and a docs page that needs nothing but this service."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sanic import Sanic
from sanic.request import Request

import api.endpoint as endpoint_module
from api import docs as docs_api
from api.admin import RoleGrantIn
from api.app import create_app
from api.endpoint import (
    STATUS_DESCRIPTIONS,
    TAG_DESCRIPTIONS,
    SchemaNameClash,
    endpoint,
    schema_component,
)
from api.helpers import ProxyGrantIn
from api.schemas import ErrorBody
from services import wechat as wechat_service
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import docs_browser_check  # noqa: E402

CJK = re.compile(r"[\u4e00-\u9fff]")


async def _spec(api: Any) -> dict[str, Any]:
    resp = await api.get("/docs/openapi.json")
    assert resp.status == 200
    return dict(resp.json)


async def _handler(_request: Request) -> None:
    return None


# ---- one class per component name -------------------------------------------------------


@pytest.fixture
def owners(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """The registry as the app left it, restored after the test."""
    copy = dict(endpoint_module._COMPONENT_OWNERS)
    monkeypatch.setattr(endpoint_module, "_COMPONENT_OWNERS", copy)
    return copy


def test_a_second_class_under_a_taken_name_fails_at_start(owners: dict[str, type]) -> None:
    class RoleGrantIn(BaseModel):  # the proxy grant's old clash, re-enacted
        helper_user_id: int

    with pytest.raises(SchemaNameClash) as clash:
        endpoint(body=RoleGrantIn)(_handler)
    assert "api.admin.RoleGrantIn" in str(clash.value)
    assert "test_contract" in str(clash.value)
    assert owners["RoleGrantIn"] is endpoint_module._COMPONENT_OWNERS["RoleGrantIn"]


def test_a_clash_nested_in_a_field_fails_too(owners: dict[str, type]) -> None:
    class ErrorDetail(BaseModel):  # taken by api.schemas, which every route documents
        reason: str

    class ContractProbeOut(BaseModel):
        detail: list[ErrorDetail] | None

    with pytest.raises(SchemaNameClash, match="ErrorDetail"):
        endpoint(response=ContractProbeOut)(_handler)


def test_the_same_class_again_is_not_a_clash(owners: dict[str, type]) -> None:
    assert schema_component(ErrorBody).fields["$ref"] == "#/components/schemas/ErrorBody"
    assert schema_component(ProxyGrantIn).fields["$ref"].endswith("/ProxyGrantIn")


async def test_each_route_documents_its_own_body(api: Any) -> None:
    spec = await _spec(api)
    proxy = spec["paths"]["/api/v1/proxy-authorizations"]["post"]
    grant = spec["paths"]["/api/v1/admin/users/{user_id}/roles"]["post"]
    proxy_ref = proxy["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    grant_ref = grant["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    assert set(schemas[proxy_ref.rsplit("/", 1)[1]]["properties"]) == set(
        ProxyGrantIn.model_fields)
    assert set(schemas[grant_ref.rsplit("/", 1)[1]]["properties"]) == set(
        RoleGrantIn.model_fields)


async def test_every_component_is_the_class_registered_under_its_name(api: Any) -> None:
    schemas = (await _spec(api))["components"]["schemas"]
    checked = 0
    for name, cls in endpoint_module._COMPONENT_OWNERS.items():
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or name not in schemas:
            continue
        own = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert schemas[name] == own, f"the document shows another class as {name}"
        checked += 1
    assert checked > 100


async def test_every_route_is_callable_from_wx_request(api: Any) -> None:
    """wx.request sends no PATCH: a PATCH route would be unreachable from the mini program
    (and the typed client in miniprogram_stub/ts offers only what wx.request can send)."""
    spec = await _spec(api)
    methods = {method for item in spec["paths"].values() for method in item}
    assert methods <= {"get", "post", "put", "delete"}, methods


def test_the_typed_client_is_generated_from_these_schemas() -> None:
    types = (ROOT / "miniprogram_stub/ts/src/schema.d.ts").read_text(encoding="utf-8")
    for name in ("ProxyGrantIn", "RoleGrantIn", "CaseReopenIn", "FeedbackReopenIn",
                 "PersonRevealOut", "HelperRevealOut"):
        assert f"export type {name} = components['schemas']['{name}'];" in types, name


# ---- Chinese tags and responses ---------------------------------------------------------


async def test_every_tag_has_a_chinese_description(api: Any) -> None:
    spec = await _spec(api)
    described = {t["name"]: t.get("description", "") for t in spec["tags"]}
    used = {tag for item in spec["paths"].values() for op in item.values()
            for tag in op.get("tags", [])}
    for tag in used:
        assert CJK.search(described.get(tag, "")), f"tag {tag!r} has no Chinese description " \
            "(add it to TAG_DESCRIPTIONS in api/endpoint.py)"
    assert set(TAG_DESCRIPTIONS) <= set(described)


async def test_every_response_has_a_chinese_description(api: Any) -> None:
    spec = await _spec(api)
    seen: set[str] = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                assert CJK.search(response.get("description", "")), (method, path, status)
                seen.add(status)
    assert {"200", "201", "401", "404", "422", "429"} <= seen
    login = spec["paths"]["/api/v1/auth/wechat-login"]["post"]["responses"]
    assert login["429"]["description"] == STATUS_DESCRIPTIONS[429]


# ---- the docs page ------------------------------------------------------------------------


async def test_docs_page_loads_only_from_this_service(api: Any) -> None:
    page = await api.get("/docs")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert '<meta charset="utf-8">' in text
    assert "Content-Security-Policy" in text
    version = re.search(r'name="swagger-ui-version" content="(\d+)\.\d+\.\d+"', text)
    assert version and int(version.group(1)) >= 5  # 4.x cannot render OpenAPI 3.1
    assert "__" not in text  # every placeholder filled
    references = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert len(references) == 4
    for ref in references:
        assert ref.startswith("/docs/assets/"), f"{ref} is not served by this service"
        asset = await api.get(ref)
        assert asset.status == 200, ref
        assert len(asset.body) > 100
    spec_url = re.search(r'data-spec-url="([^"]+)"', text)
    assert spec_url and (await api.get(spec_url.group(1))).status == 200


async def test_docs_assets_are_an_allow_list(api: Any) -> None:
    bundle = await api.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in bundle.text
    for name in ("index.html", "swagger-initializer.js", "..%2F..%2Fapi%2Fapp.py",
                 "swagger-ui.js.map"):
        resp = await api.get(f"/docs/assets/{name}")
        assert resp.status == 404, name
        assert resp.json["error"]["code"] == "not_found"


async def test_sanic_ext_cdn_pages_are_gone(api: Any) -> None:
    for path in ("/docs/swagger", "/docs/redoc", "/docs/oauth2-redirect.html",
                 "/docs/swagger-config"):
        assert (await api.get(path)).status == 404, path


async def test_docs_can_be_switched_off(backend: Any) -> None:
    # A second app installs its own WeChat gateway; the session's must be back afterwards.
    gateway = wechat_service.wechat()
    try:
        off = create_app(settings=Settings(env="test", docs_enabled=False),
                         manage_resources=False, name="xiaoqing_docs_off")
        off.asgi = True
        await off._startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=off),
                                     base_url="http://testserver") as client:
            for path in ("/docs", "/docs/openapi.json", "/docs/assets/swagger-ui-bundle.js"):
                resp = await client.get(path)
                assert resp.status_code == 404, path
                assert resp.json()["error"]["code"] == "route_not_found"
            assert (await client.get("/healthz")).status_code == 200
    finally:
        wechat_service.configure(gateway)
        Sanic._app_registry.pop("xiaoqing_docs_off", None)


def test_docs_are_off_in_production_unless_asked_for() -> None:
    secrets = {"jwt_secret": "x" * 40, "data_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
               "wechat_mode": "http", "wechat_secret": "real-secret"}
    assert Settings(env="production", **secrets).docs_on() is False
    assert Settings(env="production", docs_enabled=True, **secrets).docs_on() is True
    assert Settings(env="development").docs_on() is True
    assert Settings(env="test", docs_enabled=False).docs_on() is False


def test_the_page_names_the_packaged_swagger_ui() -> None:
    assert docs_api.PAGE.is_file()
    assert (docs_api.ASSETS / "swagger-ui-bundle.js").is_file()
    assert int(docs_api.SWAGGER_UI_VERSION.split(".")[0]) >= 5


# ---- the browser check's judgement --------------------------------------------------------


_SPEC = {"paths": {"/a": {"get": {}, "post": {}}, "/b/{id}": {"get": {}}},
         "tags": [{"name": "t", "description": "测试分组"}]}


def _dom(paths: list[str], extra: str = "", version: str = "5.31.0") -> str:
    ops = "".join(f'<span class="opblock-summary-path" data-path="{p}"></span>' for p in paths)
    return f'<meta name="swagger-ui-version" content="{version}"><h3>测试分组</h3>{ops}{extra}'


def test_browser_check_passes_a_fully_drawn_page() -> None:
    assert docs_browser_check.check(_dom(["/a", "/a", "/b/{id}"]), _SPEC) == []


def test_browser_check_fails_a_blank_or_partial_page() -> None:
    assert docs_browser_check.check(_dom(["/a", "/b/{id}"]), _SPEC)  # one /a missing
    blank = '<meta name="swagger-ui-version" content="5.31.0"><div id="swagger-ui"></div>'
    problems = docs_browser_check.check(blank, _SPEC)
    assert any("3 of 3 operations not drawn" in p for p in problems)
    assert any("description" in p for p in problems)
    assert docs_browser_check.check(_dom(["/a", "/a", "/b/{id}"], version="4.10.3"), _SPEC)
    error = '<div class="errors-wrapper">Unable to render this definition</div>'
    assert docs_browser_check.check(_dom(["/a", "/a", "/b/{id}"], extra=error), _SPEC)


def test_only_models_that_cannot_hold_an_int_skip_the_range_walk() -> None:
    """A body that validates skips the walk for ints no column can hold only when no field,
    however nested, can hold one; anything the check can't read is walked."""
    from typing import Literal

    from pydantic import BaseModel

    class Texts(BaseModel):
        a: str
        b: list[str] | None = None
        c: Literal["x", "y"] = "x"
        d: float = 0.0
        e: bool = False

    class Nested(BaseModel):
        inner: list[Texts]

    class Ints(BaseModel):
        inner: list[dict[str, int]]

    class Loose(BaseModel):
        extra: dict[str, Any]

    class Coded(BaseModel):
        kind: Literal[1, 2]

    assert not endpoint_module._may_hold_int(Texts)
    assert not endpoint_module._may_hold_int(Nested)
    for model in (Ints, Loose, Coded):
        assert endpoint_module._may_hold_int(model), model
