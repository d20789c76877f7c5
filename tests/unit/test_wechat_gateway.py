"""services/wechat.py over the real wechatpy code path, with the fake platform behind it."""

import asyncio

import pytest

from services import cache
from services.errors import AppError
from services.wechat import wechat


async def test_login_gives_stable_openid(fake_wechat):
    a = await wechat().login("alice")
    b = await wechat().login("alice")
    assert a.openid == b.openid == fake_wechat.openid_for("alice")
    assert a.session_key != b.session_key  # a new session key per login


async def test_access_token_is_shared_through_redis_with_one_fetch(fake_wechat):
    calls_before = fake_wechat.token_calls
    tokens = await asyncio.gather(*(wechat().access_token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert fake_wechat.token_calls - calls_before == 1
    assert await cache.redis().get("wechat:access_token") == tokens[0]
    ttl = await cache.redis().ttl("wechat:access_token")
    assert 0 < ttl <= 7200 - 300


async def test_a_rejected_token_is_replaced_once(fake_wechat):
    await cache.redis().set("wechat:access_token", "stale-token")
    outcome = await wechat().send_subscribe_message(
        openid=fake_wechat.openid_for("alice"), template_id="t1", data={"thing1": "hi"})
    assert outcome.ok
    assert await cache.redis().get("wechat:access_token") != "stale-token"


async def test_refused_message_is_an_outcome_not_an_exception(fake_wechat):
    openid = fake_wechat.openid_for("alice")
    fake_wechat.refuse(openid)
    outcome = await wechat().send_subscribe_message(openid=openid, template_id="t1",
                                                    data={"thing1": "x"})
    assert not outcome.ok and outcome.errcode == 43101
    assert fake_wechat.sent_messages == []


async def test_subscribe_message_is_recorded_with_truncated_values(fake_wechat):
    openid = fake_wechat.openid_for("alice")
    await wechat().send_subscribe_message(openid=openid, template_id="tpl",
                                          data={"thing1": "很" * 40}, page="pages/x")
    [msg] = fake_wechat.sent_messages
    assert msg["touser"] == openid and msg["template_id"] == "tpl"
    assert msg["data"]["thing1"]["value"] == "很" * 20  # thing.DATA holds at most 20 chars


async def test_wxacode_and_scene_limit(fake_wechat):
    png = await wechat().wxacode_unlimited(scene="c=abc123")
    assert png.startswith(b"\x89PNG")
    with pytest.raises(AppError):
        await wechat().wxacode_unlimited(scene="x" * 33)


async def test_phone_number_and_text_check(fake_wechat):
    assert await wechat().phone_number("p1") == fake_wechat.phone_for("p1")
    openid = fake_wechat.openid_for("alice")
    assert (await wechat().check_text(openid=openid, text="窗口服务很好")).suggest == "pass"
    assert (await wechat().check_text(openid=openid, text="赌博网站")).suggest == "risky"


async def test_platform_down_is_503(fake_wechat, monkeypatch):
    import requests

    from services import wechat as module

    def boom(*_a, **_k):
        raise requests.ConnectionError("down")

    await cache.redis().delete("wechat:access_token")
    monkeypatch.setattr(module.WeChat, "_fetch_stable_token", boom)
    with pytest.raises(AppError) as exc:
        await wechat().login("alice")
    assert exc.value.status == 503
