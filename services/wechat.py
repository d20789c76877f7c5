"""The one door to WeChat: login, access token, subscribe messages, mini-program codes, phone
numbers and content security.

wechatpy is synchronous (``requests``), so every call runs in a worker thread and the event
loop never waits on the network. The access token lives in Redis, shared by all workers, with
one refresher at a time; wechatpy's own token handling is switched off (``auto_retry=False``
and ``fetch_access_token`` refuses) because it would fetch the classic token per process.

Which platform answers is decided by the transport mounted on the HTTP session: the real
api.weixin.qq.com, an HTTP stand-in at another address, or the in-process fake. The code
path above the transport is the same in all three.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from services import cache
from services.errors import AppError, ErrorCode

log = logging.getLogger(__name__)

WECHAT_BASE = "https://api.weixin.qq.com/"
_TOKEN_KEY = "wechat:access_token"  # noqa: S105 — a Redis key name
_TOKEN_LOCK = "wechat:access_token:lock"  # noqa: S105
# Platform answers meaning "this token is not (or no longer) good".
_TOKEN_ERRORS = {40001, 40014, 42001}

T = TypeVar("T")


@dataclass(frozen=True)
class WxSession:
    openid: str
    session_key: str
    unionid: str | None


@dataclass(frozen=True)
class SendOutcome:
    ok: bool
    errcode: int
    detail: str


@dataclass(frozen=True)
class SecCheck:
    suggest: str  # pass | review | risky
    label: int


@dataclass(frozen=True)
class FaceSession:
    verify_id: str
    expires_in: int


def cert_hash(*, cert_name: str, cert_no: str, cert_type: str = "IDENTITY_CARD") -> str:
    """queryVerifyInfo's ``cert_hash``, per WeChat's docs: each cert_info field in standard
    base64 (of its UTF-8 bytes), joined as ``cert_type=..&cert_name=..&cert_no=..``, SHA-256,
    lowercase hex. The platform recomputes it from what getVerifyId got, so a finish step
    can't swap the identity the face was checked against."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    joined = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(joined.encode("ascii")).hexdigest()


class _TokenRejected(Exception):
    pass


class _Client(WeChatClient):  # type: ignore[misc]
    def fetch_access_token(self) -> dict[str, Any]:
        # Never let wechatpy fetch a token on its own: the shared one in Redis is the truth.
        raise _TokenRejected


class RebaseAdapter(HTTPAdapter):
    """Sends requests meant for api.weixin.qq.com to another base URL (the standalone stub)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base.rstrip("/") + "/"

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.url and request.url.startswith(WECHAT_BASE):
            request.url = self.base + request.url.removeprefix(WECHAT_BASE)
        return super().send(request, *args, **kwargs)


class WeChat:
    def __init__(
        self, *, appid: str, secret: str, adapter: BaseAdapter | None = None, timeout: float = 5
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.timeout = timeout
        self._http = requests.Session()
        if adapter is not None:
            self._http.mount(WECHAT_BASE, adapter)

    # -- plumbing ---------------------------------------------------------------------------

    def _client(self, token: str) -> _Client:
        client = _Client(self.appid, self.secret, access_token=token, timeout=self.timeout,
                         auto_retry=False)
        client._http = self._http
        return client

    async def access_token(self) -> str:
        r = cache.redis()
        token = await r.get(_TOKEN_KEY)
        if token:
            return str(token)
        # One refresher across all workers; the others wait and then read what it stored.
        async with r.lock(_TOKEN_LOCK, timeout=15, blocking_timeout=15):
            token = await r.get(_TOKEN_KEY)
            if token:
                return str(token)
            data = await self._off_loop(self._fetch_stable_token)
            token = str(data["access_token"])
            # Renew ahead of expiry: the platform rolls the stable token in its last 5 minutes.
            ttl = max(60, int(data.get("expires_in", 7200)) - 300)
            await r.set(_TOKEN_KEY, token, ex=ttl)
            return token

    def _fetch_stable_token(self) -> dict[str, Any]:
        # The stable token: repeated calls within its validity don't invalidate it, so several
        # services sharing the appid can't knock each other out (wechatpy 1.8 lacks it).
        resp = self._http.post(
            WECHAT_BASE + "cgi-bin/stable_token",
            data=json.dumps({"grant_type": "client_credential", "appid": self.appid,
                             "secret": self.secret, "force_refresh": False}),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout,
        )
        data: dict[str, Any] = resp.json()
        if "access_token" not in data:
            raise WeChatClientException(data.get("errcode", -1), data.get("errmsg", "no token"))
        return data

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except requests.RequestException as exc:
            log.warning("wechat unreachable: %s", exc)
            raise AppError(ErrorCode.wechat_unavailable) from exc

    async def _call(self, fn: Callable[[_Client], T]) -> T:
        """Run ``fn`` with a client holding the shared token; on a rejected token drop it from
        Redis (unless another worker already replaced it) and try once more."""
        for attempt in (1, 2):
            token = await self.access_token()
            client = self._client(token)
            try:
                return await self._off_loop(functools.partial(fn, client))
            except (_TokenRejected, WeChatClientException) as exc:
                code = getattr(exc, "errcode", 40001)
                if code not in _TOKEN_ERRORS or attempt == 2:
                    raise
                r = cache.redis()
                if await r.get(_TOKEN_KEY) == token:
                    await r.delete(_TOKEN_KEY)
        raise AssertionError("unreachable")

    # -- the API the rest of the service uses -----------------------------------------------

    async def login(self, code: str) -> WxSession:
        try:
            data = await self._call(lambda c: c.wxa.code_to_session(code))
        except WeChatClientException as exc:
            raise AppError(ErrorCode.wechat_login_failed) from exc
        return WxSession(
            openid=data["openid"], session_key=data["session_key"], unionid=data.get("unionid")
        )

    async def send_subscribe_message(
        self, *, openid: str, template_id: str, data: dict[str, Any], page: str | None = None
    ) -> SendOutcome:
        """Never raises for a platform refusal: the business action that triggered the message
        must not fail because the user declined it. The outcome is returned for recording."""
        payload = {k: {"value": str(v)[:20]} for k, v in data.items()}
        try:
            await self._call(
                lambda c: c.wxa.send_subscribe_message(openid, template_id, payload, page=page)
            )
        except WeChatClientException as exc:
            return SendOutcome(False, int(exc.errcode), str(exc.errmsg)[:200])
        except AppError as exc:
            return SendOutcome(False, -1, exc.message)
        return SendOutcome(True, 0, "ok")

    async def wxacode_unlimited(self, *, scene: str, page: str | None = None) -> bytes:
        if len(scene) > 32:
            raise AppError(ErrorCode.validation_failed, fields={"scene": "不能超过32个字符"})
        resp = await self._call(
            lambda c: c.wxa.get_wxa_code_unlimited(scene, page=page)
        )
        if isinstance(resp, dict):
            raise AppError(ErrorCode.wechat_unavailable, f"小程序码生成失败({resp.get('errcode')})")
        return bytes(resp.content)

    async def phone_number(self, code: str) -> str:
        try:
            data = await self._call(
                lambda c: c.post(WECHAT_BASE + "wxa/business/getuserphonenumber",
                                 data={"code": code})
            )
        except WeChatClientException as exc:
            raise AppError(ErrorCode.validation_failed, "手机号授权已失效，请重新授权",
                           fields={"code": "无效的手机号授权码"}) from exc
        return str(data["phone_info"]["purePhoneNumber"])

    async def check_text(self, *, openid: str, text: str, scene: int = 2) -> SecCheck:
        """msgSecCheck v2. scene 2 = comment/feedback, per the platform's list."""
        body = {"version": 2, "openid": openid, "scene": scene, "content": text}
        try:
            data = await self._call(lambda c: c.post(WECHAT_BASE + "wxa/msg_sec_check", data=body))
        except WeChatClientException as exc:
            raise AppError(ErrorCode.wechat_unavailable, "内容安全检查暂不可用") from exc
        result = data.get("result", {})
        return SecCheck(suggest=str(result.get("suggest", "review")),
                        label=int(result.get("label", 0)))

    # -- 人脸核身 (city-service face verification) --------------------------------------------

    async def face_verify_id(
        self, *, out_seq_no: str, openid: str, cert_name: str, cert_no: str
    ) -> FaceSession:
        """getVerifyId: a session the mini program hands to ``wx.requestFacialVerify``."""
        body = {"out_seq_no": out_seq_no, "openid": openid,
                "cert_info": {"cert_type": "IDENTITY_CARD", "cert_name": cert_name,
                              "cert_no": cert_no}}
        try:
            data = await self._call(
                lambda c: c.post(WECHAT_BASE + "cityservice/face/identify/getverifyid", data=body)
            )
        except WeChatClientException as exc:
            log.warning("getverifyid refused", extra={"errcode": exc.errcode})
            raise AppError(ErrorCode.wechat_unavailable,
                           "人脸核身服务暂不可用，请稍后再试") from exc
        return FaceSession(verify_id=str(data["verify_id"]),
                           expires_in=int(data.get("expires_in", 3600)))

    async def face_verify_result(
        self, *, verify_id: str, out_seq_no: str, openid: str, cert_name: str, cert_no: str
    ) -> int | None:
        """queryVerifyInfo: the real result, asked server to server (the mini program's own
        callback is never trusted). ``verify_ret`` 10000 is the only pass; None means the
        platform had no result to give (a refused query: unknown, expired or tampered)."""
        body = {"verify_id": verify_id, "out_seq_no": out_seq_no, "openid": openid,
                "cert_hash": cert_hash(cert_name=cert_name, cert_no=cert_no)}
        try:
            data = await self._call(
                lambda c: c.post(WECHAT_BASE + "cityservice/face/identify/queryverifyinfo",
                                 data=body)
            )
        except WeChatClientException as exc:
            log.warning("queryverifyinfo refused", extra={"errcode": exc.errcode})
            if int(exc.errcode) == -1:  # "system busy": a retry may answer, the session stands
                raise AppError(ErrorCode.wechat_unavailable) from exc
            return None
        ret = data.get("verify_ret")
        return int(ret) if isinstance(ret, int) else 0


_gateway: WeChat | None = None


def configure(gateway: WeChat) -> None:
    global _gateway
    _gateway = gateway


def wechat() -> WeChat:
    if _gateway is None:
        raise RuntimeError("WeChat gateway is not configured: the app factory sets it")
    return _gateway
