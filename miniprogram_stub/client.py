"""A scripted mini program: what the real client does, over HTTP, one phone at a time.

``wx.login`` on a real phone yields a one-time code; against the stub platform any code works
and the same code is always the same user, so ``MiniProgram(base, "alice")`` is Alice's phone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx


class JourneyError(AssertionError):
    pass


class MiniProgram:
    def __init__(self, http: httpx.AsyncClient, code: str) -> None:
        self.http = http
        self.code = code
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.user_id: int | None = None

    async def login(self) -> dict[str, Any]:
        # wx.login() -> code -> our server, which trades it with WeChat (jscode2session).
        body: dict[str, Any] = await self.call("POST", "/api/v1/auth/wechat-login",
                                               json={"code": self.code}, auth=False)
        self.token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.user_id = body["user_id"]
        return body

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        expect: int | Iterable[int] = (200, 201),
        auth: bool = True,
    ) -> Any:
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        resp = await self.http.request(method, path, json=json, params=params, headers=h)
        wanted = {expect} if isinstance(expect, int) else set(expect)
        if resp.status_code not in wanted:
            raise JourneyError(
                f"{self.code}: {method} {path} -> {resp.status_code} (wanted {sorted(wanted)}): "
                f"{resp.text[:300]}"
            )
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content


class Journeys:
    """What a journey gets: phones for demo users, logged in on first use."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._phones: dict[str, MiniProgram] = {}

    async def phone(self, code: str) -> MiniProgram:
        if code not in self._phones:
            mp = MiniProgram(self.http, code)
            await mp.login()
            self._phones[code] = mp
        return self._phones[code]
