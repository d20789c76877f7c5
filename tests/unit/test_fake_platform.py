"""FakeWeChatPlatform: WeChat-shaped replies, real wechatpy over the adapter, the Sanic face."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import zxingcpp
from PIL import Image
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from miniprogram_stub.platform import FakeWeChatPlatform
from miniprogram_stub.server import create_stub_app
from miniprogram_stub.transport import mount

APPID = "wx1234567890abcdef"
SECRET = "test-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(clock: Clock) -> FakeWeChatPlatform:
    return FakeWeChatPlatform(APPID, SECRET, clock=clock)


def call(
    platform: FakeWeChatPlatform,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, str], Any]:
    raw = json.dumps(body, ensure_ascii=False).encode() if body is not None else b""
    status, headers, payload = platform.handle(method, path, query or {}, raw)
    if headers["Content-Type"].startswith("application/json"):
        return status, headers, json.loads(payload)
    return status, headers, payload


def post(
    platform: FakeWeChatPlatform, path: str, body: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    status, _, result = call(platform, "POST", path, {"access_token": token} if token else {}, body)
    assert status == 200
    assert isinstance(result, dict)
    return result


def login_query(code: str, appid: str = APPID) -> dict[str, str]:
    return {"appid": appid, "secret": SECRET, "js_code": code, "grant_type": "authorization_code"}


def login(platform: FakeWeChatPlatform, code: str) -> dict[str, Any]:
    result: dict[str, Any] = call(platform, "GET", "/sns/jscode2session", login_query(code))[2]
    return result


def stable_token(platform: FakeWeChatPlatform, force_refresh: bool = False) -> str:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    result = post(platform, "/cgi-bin/stable_token", {**body, "force_refresh": force_refresh})
    assert result["expires_in"] == 7200
    return str(result["access_token"])


SEND = "/cgi-bin/message/subscribe/send"
WXACODE = "/wxa/getwxacodeunlimit"
PHONE = "/wxa/business/getuserphonenumber"


def decode_qr(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1
    return results[0].text


def wechat_client(platform: FakeWeChatPlatform) -> WeChatClient:
    client = WeChatClient(APPID, SECRET)
    mount(client._http, platform)
    return client


# ---------------------------------------------------------------- jscode2session


def test_same_code_is_same_user_with_fresh_session_key(platform: FakeWeChatPlatform) -> None:
    first, second = login(platform, "alice"), login(platform, "alice")

    assert first["openid"] == second["openid"] == platform.openid_for("alice")
    assert first["openid"].startswith("o") and len(first["openid"]) == 28
    assert first["session_key"] != second["session_key"]
    assert len(base64.b64decode(first["session_key"])) == 16
    assert "errcode" not in first and "unionid" not in first
    assert login(platform, "bob")["openid"] != first["openid"]


def test_unionid_only_when_enabled() -> None:
    platform = FakeWeChatPlatform(APPID, SECRET, with_unionid=True)
    assert login(platform, "alice")["unionid"] == platform.unionid_for("alice")


@pytest.mark.parametrize("code", ["", "invalid", "invalid-123"])
def test_invalid_code(platform: FakeWeChatPlatform, code: str) -> None:
    assert login(platform, code) == {"errcode": 40029, "errmsg": "invalid code"}
    assert platform.logins == []


def test_wrong_appid_is_rejected(platform: FakeWeChatPlatform) -> None:
    reply = call(platform, "GET", "/sns/jscode2session", login_query("alice", appid="wxother"))
    assert reply[2] == {"errcode": 40013, "errmsg": "invalid appid"}


# ------------------------------------------------------------------ access token


def test_stable_token_is_reused_until_force_refresh(platform: FakeWeChatPlatform) -> None:
    first = stable_token(platform)
    assert stable_token(platform) == first
    refreshed = stable_token(platform, force_refresh=True)

    assert refreshed != first
    assert platform.token_calls == 3
    # force_refresh revokes the old token at once.
    body = {"touser": "o1", "template_id": "t", "data": {"thing1": {"value": "x"}}}
    assert post(platform, SEND, body, token=first)["errcode"] == 40001


def test_cgi_bin_token_issues_new_token_each_call(platform: FakeWeChatPlatform) -> None:
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = call(platform, "GET", "/cgi-bin/token", query)[2]
    second = call(platform, "GET", "/cgi-bin/token", query)[2]

    assert first["access_token"] != second["access_token"]
    assert second["expires_in"] == 7200
    assert platform.token_calls == 2


def test_access_token_is_required(platform: FakeWeChatPlatform, clock: Clock) -> None:
    body = {"code": "p1"}

    assert post(platform, PHONE, body)["errcode"] == 41001
    assert post(platform, PHONE, body, token="forged") == {
        "errcode": 40001,
        "errmsg": "invalid credential, access_token is invalid or not latest",
    }

    token = stable_token(platform)
    assert post(platform, PHONE, body, token=token)["errcode"] == 0
    clock.now += 7200
    assert post(platform, PHONE, body, token=token)["errcode"] == 42001
    assert stable_token(platform) != token


def test_unknown_path_and_wrong_method(platform: FakeWeChatPlatform) -> None:
    status, _, body = call(platform, "GET", "/cgi-bin/nope")
    assert (status, body) == (404, {"errcode": -1, "errmsg": "not found"})
    assert call(platform, "GET", "/wxa/msg_sec_check")[2]["errcode"] == 43002


# ------------------------------------------------------------- subscribe message


def test_subscribe_send_is_recorded_and_refusal_reported(platform: FakeWeChatPlatform) -> None:
    token = stable_token(platform)
    alice = platform.openid_for("alice")
    data = {"thing1": {"value": "您的预约已受理"}, "time2": {"value": "2024-05-01 10:00"}}
    page = "pages/order/detail?id=7"
    body = {"touser": alice, "template_id": "tpl-1", "page": page, "data": data}

    sent = post(platform, SEND, body, token=token)

    assert sent == {"errcode": 0, "errmsg": "ok", "msgid": sent["msgid"]}
    [record] = platform.sent_messages
    assert record["touser"] == alice and record["data"] == data and record["msgid"] == sent["msgid"]
    assert record["page"] == page

    platform.refused_openids.add(alice)
    assert post(platform, SEND, body, token=token) == {
        "errcode": 43101,
        "errmsg": "user refuse to accept the msg",
    }
    assert len(platform.sent_messages) == 1


def test_subscribe_send_validates_data_shape(platform: FakeWeChatPlatform) -> None:
    body = {"touser": "o1", "template_id": "tpl-1", "data": {"thing1": "bare string"}}
    assert post(platform, SEND, body, token=stable_token(platform))["errcode"] == 47003


# ------------------------------------------------------------------------ wxacode


def test_wxacode_png_encodes_scene(platform: FakeWeChatPlatform) -> None:
    token = {"access_token": stable_token(platform)}
    body = {"scene": "shop=42&ref=abc", "page": "pages/index/index"}
    status, headers, png = call(platform, "POST", WXACODE, token, body)

    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_qr(png) == "shop=42&ref=abc"
    assert platform.wxacodes[0]["scene"] == "shop=42&ref=abc"


def test_wxacode_scene_limit(platform: FakeWeChatPlatform) -> None:
    token = stable_token(platform)
    too_long = post(platform, WXACODE, {"scene": "x" * 33}, token=token)
    assert too_long == {"errcode": 40169, "errmsg": "invalid length for scene"}
    assert post(platform, WXACODE, {"scene": "门店=1"}, token=token)["errcode"] == 40169
    assert platform.wxacodes == []


# ------------------------------------------------------------------- phone number


def test_phone_number_is_stable_per_code(platform: FakeWeChatPlatform, clock: Clock) -> None:
    token = stable_token(platform)
    result = post(platform, PHONE, {"code": "p1"}, token=token)

    info = result["phone_info"]
    assert result["errcode"] == 0
    assert info["phoneNumber"] == info["purePhoneNumber"] == platform.phone_for("p1")
    assert info["phoneNumber"].startswith("138") and len(info["phoneNumber"]) == 11
    assert info["countryCode"] == "86"
    assert info["watermark"] == {"timestamp": int(clock.now), "appid": APPID}
    again = post(platform, PHONE, {"code": "p1"}, token=token)
    assert again["phone_info"]["phoneNumber"] == info["phoneNumber"]

    assert post(platform, PHONE, {"code": "invalid-x"}, token=token) == {
        "errcode": 40029,
        "errmsg": "invalid code",
    }


# ------------------------------------------------------------------ msg_sec_check


@pytest.mark.parametrize(
    ("content", "suggest", "label"),
    [
        ("今天天气不错", "pass", 100),
        ("请人工审核一下", "review", 21000),
        ("线上赌博", "risky", 20006),
        ("FUCK", "risky", 20003),
    ],
)
def test_msg_sec_check_v2(
    platform: FakeWeChatPlatform, content: str, suggest: str, label: int
) -> None:
    body = {"version": 2, "openid": platform.openid_for("alice"), "scene": 2, "content": content}
    result = post(platform, "/wxa/msg_sec_check", body, token=stable_token(platform))

    assert (result["errcode"], result["errmsg"]) == (0, "ok")
    assert result["result"] == {"suggest": suggest, "label": label}
    assert result["detail"][0]["suggest"] == suggest and result["trace_id"]
    assert platform.sec_checks[-1]["suggest"] == suggest


def test_concurrent_sends_get_unique_msgids(platform: FakeWeChatPlatform) -> None:
    token = stable_token(platform)
    body = {"touser": "o1", "template_id": "tpl-1", "data": {"thing1": {"value": "x"}}}
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: post(platform, SEND, body, token=token), range(200)))

    msgids = {reply["msgid"] for reply in replies}
    assert len(msgids) == 200
    assert {m["msgid"] for m in platform.sent_messages} == msgids


def test_snapshot_and_reset(platform: FakeWeChatPlatform) -> None:
    login(platform, "alice")
    platform.refuse("o-someone")
    snap = platform.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["logins"][0]["openid"] == platform.openid_for("alice")
    assert snap["refused_openids"] == ["o-someone"]

    platform.reset()
    assert platform.snapshot()["logins"] == [] and platform.refused_openids == set()


# ----------------------------------------------------- real wechatpy via adapter


def test_wechatpy_client_end_to_end_through_adapter(platform: FakeWeChatPlatform) -> None:
    client = wechat_client(platform)

    session = client.wxa.code_to_session("alice")
    assert session["openid"] == platform.openid_for("alice")

    openid = session["openid"]
    data = {"thing1": {"value": "已受理"}}
    sent = client.wxa.send_subscribe_message(openid, "tpl-1", data, page="pages/index/index")
    assert sent["errcode"] == 0
    assert platform.sent_messages[0]["data"] == {"thing1": {"value": "已受理"}}

    response = client.wxa.get_wxa_code_unlimited("ref=alice", page="pages/index/index")
    assert isinstance(response, requests.Response)
    assert response.headers["Content-Type"] == "image/png"
    assert decode_qr(response.content) == "ref=alice"

    # One /cgi-bin/token fetch served all three calls: wechatpy caches the token.
    assert platform.token_calls == 1

    platform.refused_openids.add(openid)
    with pytest.raises(WeChatClientException) as refused:
        client.wxa.send_subscribe_message(openid, "tpl-1", {"thing1": {"value": "x"}})
    assert refused.value.errcode == 43101

    with pytest.raises(WeChatClientException) as bad_login:
        client.wxa.code_to_session("invalid-code")
    assert bad_login.value.errcode == 40029


def test_wechatpy_refetches_token_the_platform_expired(
    platform: FakeWeChatPlatform, clock: Clock
) -> None:
    client = wechat_client(platform)
    client.wxa.code_to_session("alice")
    # Only the platform's clock moves, so wechatpy still trusts its cached token and meets 42001.
    clock.now += 7200

    assert client.wxa.check_text_security("你好") == {"errcode": 0, "errmsg": "ok"}
    assert platform.token_calls == 2


# ------------------------------------------------------------------ Sanic face


@pytest.mark.asyncio
async def test_stub_app_serves_platform_and_inspection_endpoints() -> None:
    platform = FakeWeChatPlatform(APPID, SECRET)
    app = create_stub_app(platform)
    query = login_query("alice")

    _, response = await app.asgi_client.get("/sns/jscode2session", params=query)
    assert response.status == 200
    assert response.json["openid"] == platform.openid_for("alice")

    openid = response.json["openid"]
    _, response = await app.asgi_client.post("/_stub/refuse", json={"openid": openid})
    assert response.status == 200

    _, response = await app.asgi_client.get("/_stub/sent")
    assert response.json["logins"][0]["openid"] == platform.openid_for("alice")
    assert response.json["refused_openids"] == [platform.openid_for("alice")]

    _, response = await app.asgi_client.get("/sns/jscode2session", params={**query, "js_code": ""})
    assert response.json == {"errcode": 40029, "errmsg": "invalid code"}

    _, response = await app.asgi_client.post("/_stub/reset")
    _, response = await app.asgi_client.get("/_stub/sent")
    assert response.json["logins"] == []
