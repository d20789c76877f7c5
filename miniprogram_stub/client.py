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


    async def request_facial_verify(self, verify_id: str, *, result: str = "face",
                                    face: str | None = None) -> int:
        """``wx.requestFacialVerify({verifyId})``. On a phone WeChat runs the face check and
        reports to its own servers, not to ours; against the stub platform the scripted user
        says what happens: ``result`` "face" shows a face (the phone owner's, or ``face`` = the
        ID number of whoever is really in front of the camera), or "cancel", "timeout",
        "no_camera", ... (miniprogram_stub.platform.FACE_RESULTS). Returns the verify_ret the
        platform recorded; our server learns it only by asking WeChat itself."""
        body: dict[str, Any] = {"verify_id": verify_id, "result": result}
        if face is not None:
            body["face"] = face
        resp = await self.http.post("/_stub/face/verify", json=body)
        data = resp.json()
        if resp.status_code != 200 or data.get("errcode") != 0:
            raise JourneyError(f"{self.code}: wx.requestFacialVerify failed: {resp.text[:300]}")
        return int(data["verify_ret"])

    async def verify_identity(self, name: str, id_number: str, *, result: str = "face",
                              face: str | None = None, expect: int | Iterable[int] = 200) -> Any:
        """The mini program's real-name flow: start, the face step, then our server asks."""
        started = await self.call("POST", "/api/v1/me/identity/verifications",
                                  json={"name": name, "id_number": id_number}, expect=201)
        await self.request_facial_verify(started["verify_id"], result=result, face=face)
        return await self.call("POST",
                               f"/api/v1/me/identity/verifications/{started['id']}/finish",
                               expect=expect)


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
