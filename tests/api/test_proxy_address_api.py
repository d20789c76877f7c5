"""The client's address behind a reverse proxy (issue 11): login limits bucket by
``request.client_ip``. Untrusted (the default), a forged X-Forwarded-For changes nothing;
with ``XQ_PROXIES_COUNT`` set, the address the proxy appended is the client's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sanic import Sanic

from api.app import create_app
from services import cache
from services import wechat as wechat_service
from services.settings import Settings, get_settings

LOGIN = "/api/v1/auth/wechat-login"


async def _logins(http: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
    out = []
    for i, addr in enumerate(forwarded):
        resp = await http.post(LOGIN, json={"code": f"proxy-user-{i}"},
                               headers={"X-Forwarded-For": addr})
        out.append(resp.status_code)
    return out


@pytest.fixture
async def behind_nginx(app: Sanic, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
                       ) -> AsyncIterator[httpx.AsyncClient]:
    """A second app configured for one trusted proxy, as behind nginx, reached from the
    proxy's own address (10.0.0.2)."""
    monkeypatch.setattr(wechat_service, "_gateway", wechat_service._gateway)  # restored after
    settings = Settings(**{**get_settings().model_dump(), "proxies_count": 1})
    proxied = create_app(settings=settings, manage_resources=False, name="xiaoqing_proxied")
    proxied.asgi = True
    await proxied._startup()
    transport = httpx.ASGITransport(app=proxied, client=("10.0.0.2", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_forged_forwarded_for_is_ignored_by_default(app: Any, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_rate_limit", 2)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        # Each request claims another address; all of them are the same peer, so one bucket.
        statuses = await _logins(http, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
    assert statuses == [200, 200, 429]
    assert await cache.redis().exists("rl:login:10.0.0.2")
    assert not await cache.redis().exists("rl:login:203.0.113.1")


async def test_a_configured_proxy_is_trusted_for_the_client_address(behind_nginx, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_rate_limit", 2)
    # Three residents behind one proxy no longer share (and exhaust) one bucket ...
    assert await _logins(behind_nginx, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [
        200, 200, 200]
    assert await cache.redis().exists("rl:login:203.0.113.1")
    assert not await cache.redis().exists("rl:login:10.0.0.2")
    # ... while one resident is still limited, and only the proxy's own (last) entry counts:
    # a client-supplied prefix in the header can't pick another bucket.
    spoofed = ["198.51.100.9, 203.0.113.7", "198.51.100.8, 203.0.113.7", "203.0.113.7"]
    assert await _logins(behind_nginx, spoofed) == [200, 200, 429]


def test_trusting_proxies_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wechat_service, "_gateway", wechat_service._gateway)  # restored after
    s = Settings()
    assert (s.proxies_count, s.real_ip_header, s.forwarded_secret) == (0, "", "")
    app = create_app(settings=s, manage_resources=False, name="xiaoqing_default_proxy")
    assert app.config.PROXIES_COUNT is None and app.config.REAL_IP_HEADER is None
    assert app.config.FORWARDED_SECRET is None
