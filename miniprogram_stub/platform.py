"""In-memory stand-in for api.weixin.qq.com.

Speaks the same paths, status codes and JSON shapes as the real platform so
that production code (wechatpy included) runs unmodified against it. Real
WeChat answers business errors with HTTP 200 and an ``errcode`` body; only an
unknown path gets a non-200 status here.

State lives in process memory: it is a test double, so every process (the
embedded adapter, each ``python -m miniprogram_stub.server``) has its own
users, tokens and records.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import qrcode

Reply = tuple[int, dict[str, str], bytes]
JSONObject = dict[str, Any]

# WeChat really sends this (not "charset="); clients must cope with it.
JSON_CONTENT_TYPE = "application/json; encoding=utf-8"
TOKEN_TTL_SECONDS = 7200
# Real /cgi-bin/token keeps the previous token usable for 5 minutes after a refresh.
PREVIOUS_TOKEN_GRACE_SECONDS = 300
SCENE_MAX_LENGTH = 32
_SCENE_CHARS = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+")
_WXACODE_WIDTH_RANGE = (280, 1280)
_MINIPROGRAM_STATES = frozenset({"developer", "trial", "formal"})

# Labels follow the msgSecCheck v2 docs: 20002 色情, 20003 辱骂, 20006 违法犯罪, 21000 其他.
RISKY_WORDS: dict[str, int] = {"赌博": 20006, "色情": 20002, "fuck": 20003}
REVIEW_WORDS: dict[str, int] = {"审核": 21000}
PASS_LABEL = 100


class LoginRecord(TypedDict):
    code: str
    openid: str
    at: float


class SentMessage(TypedDict):
    touser: str
    template_id: str
    data: JSONObject
    page: str | None
    miniprogram_state: str | None
    msgid: int
    at: float


class WxaCodeRecord(TypedDict):
    scene: str
    page: str | None
    width: int
    at: float


class PhoneLookup(TypedDict):
    code: str
    phone_number: str
    at: float


class SecCheckRecord(TypedDict):
    version: int
    openid: str | None
    scene: int | None
    content: str
    suggest: str
    label: int
    at: float


@dataclass
class _Token:
    appid: str
    expires_at: float


@dataclass(frozen=True)
class _RenderQr:
    """Deferred PNG render, so the (slow) drawing happens outside the lock."""

    scene: str
    width: int


_Outcome = Reply | _RenderQr


def _json_reply(payload: JSONObject, status: int = 200) -> Reply:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return status, {"Content-Type": JSON_CONTENT_TYPE}, body


def _error(errcode: int, errmsg: str) -> Reply:
    return _json_reply({"errcode": errcode, "errmsg": errmsg})


def _parse_json_object(body: bytes) -> JSONObject | None:
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _stable_id(seed: str) -> str:
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode("ascii")[:27]


def _render_qr_png(scene: str, width: int) -> bytes:
    qr = qrcode.QRCode(border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(scene)
    qr.make(fit=True)
    # Size the modules so the image lands near the requested pixel width, like WeChat's.
    qr.box_size = max(1, width // (qr.modules_count + 2 * qr.border))
    buf = io.BytesIO()
    qr.make_image().save(buf, format="PNG")
    return buf.getvalue()


class FakeWeChatPlatform:
    """Thread-safe fake of the WeChat server-side API used by the mini program.

    ``appid``/``secret`` of ``None`` accept any credentials; set them to make
    misconfiguration fail the way the real platform does (40013/40125).
    """

    def __init__(
        self,
        appid: str | None = None,
        secret: str | None = None,
        *,
        with_unionid: bool = False,
        token_ttl: int = TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.with_unionid = with_unionid
        self.token_ttl = token_ttl
        self._clock = clock
        # Not reentrant on purpose: handlers never call back into handle().
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._latest_token: dict[str, str] = {}
        self._stable_token: dict[str, str] = {}
        self._next_msgid = 1_000_000_001
        self.token_calls = 0
        self.refused_openids: set[str] = set()
        self.logins: list[LoginRecord] = []
        self.sent_messages: list[SentMessage] = []
        self.wxacodes: list[WxaCodeRecord] = []
        self.phone_lookups: list[PhoneLookup] = []
        self.sec_checks: list[SecCheckRecord] = []
        self._routes: dict[str, tuple[str, bool, Callable[..., _Outcome]]] = {
            # path: (HTTP method, needs access_token, handler)
            "/sns/jscode2session": ("GET", False, self._jscode2session),
            "/cgi-bin/token": ("GET", False, self._token),
            "/cgi-bin/stable_token": ("POST", False, self._stable_token_endpoint),
            "/cgi-bin/message/subscribe/send": ("POST", True, self._subscribe_send),
            "/wxa/getwxacodeunlimit": ("POST", True, self._wxacode_unlimit),
            "/wxa/business/getuserphonenumber": ("POST", True, self._phone_number),
            "/wxa/msg_sec_check": ("POST", True, self._msg_sec_check),
        }

    # ------------------------------------------------------------------ public

    def openid_for(self, code: str) -> str:
        """The openid jscode2session returns for ``code`` (stable per appid)."""
        return _stable_id(f"{self.appid or ''}:{code}")

    def unionid_for(self, code: str) -> str:
        return _stable_id(f"unionid:{code}")

    def phone_for(self, code: str) -> str:
        digits = int.from_bytes(hashlib.sha256(code.encode("utf-8")).digest()[:8], "big")
        return f"138{digits % 100_000_000:08d}"

    def refuse(self, openid: str) -> None:
        with self._lock:
            self.refused_openids.add(openid)

    def handle(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Reply:
        with self._lock:
            outcome = self._dispatch(method.upper(), path, query, body)
        if isinstance(outcome, _RenderQr):
            return 200, {"Content-Type": "image/png"}, _render_qr_png(outcome.scene, outcome.width)
        return outcome

    def reset(self) -> None:
        """Forget records and refusals; issued tokens stay valid so live clients keep working."""
        with self._lock:
            self.token_calls = 0
            self.refused_openids.clear()
            self.logins.clear()
            self.sent_messages.clear()
            self.wxacodes.clear()
            self.phone_lookups.clear()
            self.sec_checks.clear()

    def snapshot(self) -> JSONObject:
        with self._lock:
            return copy.deepcopy(
                {
                    "token_calls": self.token_calls,
                    "refused_openids": sorted(self.refused_openids),
                    "logins": self.logins,
                    "sent_messages": self.sent_messages,
                    "wxacodes": self.wxacodes,
                    "phone_lookups": self.phone_lookups,
                    "sec_checks": self.sec_checks,
                }
            )

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> _Outcome:
        route = self._routes.get(path)
        if route is None:
            return _json_reply({"errcode": -1, "errmsg": "not found"}, status=404)
        expected_method, needs_token, handler = route
        if method != expected_method:
            if expected_method == "GET":
                return _error(43001, "require GET method")
            return _error(43002, "require POST method")
        if not needs_token:
            return handler(query, body)
        token_appid_or_error = self._check_access_token(query.get("access_token", ""))
        if isinstance(token_appid_or_error, tuple):
            return token_appid_or_error
        return handler(token_appid_or_error, body)

    def _check_access_token(self, token: str) -> str | Reply:
        if not token:
            return _error(41001, "access_token missing")
        issued = self._tokens.get(token)
        if issued is None:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if issued.expires_at <= self._clock():
            return _error(42001, "access_token expired")
        return issued.appid

    def _check_credentials(self, appid: str | None, secret: str | None) -> Reply | None:
        if not appid:
            return _error(41002, "appid missing")
        if not secret:
            return _error(41004, "appsecret missing")
        if self.appid is not None and appid != self.appid:
            return _error(40013, "invalid appid")
        if self.secret is not None and secret != self.secret:
            return _error(40125, "invalid appsecret")
        return None

    def _issue_token(self, appid: str) -> str:
        token = secrets.token_urlsafe(96)
        self._tokens[token] = _Token(appid=appid, expires_at=self._clock() + self.token_ttl)
        return token

    def _token_reply(self, token: str) -> Reply:
        remaining = int(self._tokens[token].expires_at - self._clock())
        return _json_reply({"access_token": token, "expires_in": remaining})

    # ---------------------------------------------------------------- handlers

    def _jscode2session(self, query: Mapping[str, str], _body: bytes) -> Reply:
        bad = self._check_credentials(query.get("appid"), query.get("secret"))
        if bad is not None:
            return bad
        if query.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        code = query.get("js_code")
        if code is None:
            return _error(41008, "missing code")
        if not code or code.startswith("invalid"):
            return _error(40029, "invalid code")
        openid = self.openid_for(code)
        self.logins.append({"code": code, "openid": openid, "at": self._clock()})
        payload: JSONObject = {
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
            "openid": openid,
        }
        if self.with_unionid:
            payload["unionid"] = self.unionid_for(code)
        return _json_reply(payload)

    def _token(self, query: Mapping[str, str], _body: bytes) -> Reply:
        self.token_calls += 1
        if query.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        appid = query.get("appid", "")
        bad = self._check_credentials(appid, query.get("secret"))
        if bad is not None:
            return bad
        previous = self._latest_token.get(appid)
        if previous is not None and previous in self._tokens:
            grace_end = self._clock() + PREVIOUS_TOKEN_GRACE_SECONDS
            old = self._tokens[previous]
            old.expires_at = min(old.expires_at, grace_end)
        token = self._issue_token(appid)
        self._latest_token[appid] = token
        return self._token_reply(token)

    def _stable_token_endpoint(self, _query: Mapping[str, str], body: bytes) -> Reply:
        self.token_calls += 1
        payload = _parse_json_object(body)
        if payload is None:
            return _error(47001, "data format error")
        if payload.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        appid, secret = payload.get("appid"), payload.get("secret")
        if not isinstance(appid, str) or not isinstance(secret, str):
            return _error(47001, "data format error")
        bad = self._check_credentials(appid, secret)
        if bad is not None:
            return bad
        current = self._stable_token.get(appid)
        still_valid = current is not None and self._tokens[current].expires_at > self._clock()
        if current is not None and still_valid and not payload.get("force_refresh"):
            return self._token_reply(current)
        if current is not None:
            # force_refresh revokes the previous stable token immediately.
            self._tokens.pop(current, None)
        token = self._issue_token(appid)
        self._stable_token[appid] = token
        return self._token_reply(token)

    def _subscribe_send(self, _appid: str, body: bytes) -> Reply:
        payload = _parse_json_object(body)
        if payload is None:
            return _error(47001, "data format error")
        touser, template_id = payload.get("touser"), payload.get("template_id")
        data, page = payload.get("data"), payload.get("page")
        state = payload.get("miniprogram_state")
        if not isinstance(touser, str) or not touser:
            return _error(40003, "invalid openid")
        if not isinstance(template_id, str) or not template_id:
            return _error(40037, "invalid template_id")
        if not isinstance(data, dict) or not data:
            return _error(47003, "argument invalid! data is empty")
        for key, item in data.items():
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                return _error(47003, f"argument invalid! data.{key}.value is empty")
        if page is not None and not isinstance(page, str):
            return _error(47001, "data format error")
        if state is not None and state not in _MINIPROGRAM_STATES:
            return _error(47003, "argument invalid! miniprogram_state")
        if touser in self.refused_openids:
            return _error(43101, "user refuse to accept the msg")
        msgid = self._next_msgid
        self._next_msgid += 1
        self.sent_messages.append(
            {
                "touser": touser,
                "template_id": template_id,
                "data": data,
                "page": page,
                "miniprogram_state": state,
                "msgid": msgid,
                "at": self._clock(),
            }
        )
        return _json_reply({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _wxacode_unlimit(self, _appid: str, body: bytes) -> _Outcome:
        payload = _parse_json_object(body)
        if payload is None:
            return _error(47001, "data format error")
        scene, page, width = payload.get("scene"), payload.get("page"), payload.get("width", 430)
        if not isinstance(scene, str) or (page is not None and not isinstance(page, str)):
            return _error(47001, "data format error")
        if not scene or len(scene) > SCENE_MAX_LENGTH:
            return _error(40169, "invalid length for scene")
        if not _SCENE_CHARS.fullmatch(scene):
            return _error(40169, "invalid scene")
        if not isinstance(width, int) or isinstance(width, bool):
            width = 430
        width = min(max(width, _WXACODE_WIDTH_RANGE[0]), _WXACODE_WIDTH_RANGE[1])
        self.wxacodes.append({"scene": scene, "page": page, "width": width, "at": self._clock()})
        return _RenderQr(scene=scene, width=width)

    def _phone_number(self, appid: str, body: bytes) -> Reply:
        payload = _parse_json_object(body)
        code = payload.get("code") if payload is not None else None
        if not isinstance(code, str):
            return _error(47001, "data format error")
        if not code or code.startswith("invalid"):
            return _error(40029, "invalid code")
        phone = self.phone_for(code)
        now = self._clock()
        self.phone_lookups.append({"code": code, "phone_number": phone, "at": now})
        return _json_reply(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": phone,
                    "purePhoneNumber": phone,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(now), "appid": appid},
                },
            }
        )

    def _msg_sec_check(self, _appid: str, body: bytes) -> Reply:
        payload = _parse_json_object(body)
        content = payload.get("content") if payload is not None else None
        if payload is None or not isinstance(content, str):
            return _error(47001, "data format error")
        version = payload.get("version", 1)
        if version == 2:
            return self._msg_sec_check_v2(payload, content)
        # v1 (what wechatpy's check_text_security sends): pass/fail only, no "review".
        suggest, label, _word = self._classify(content)
        self.sec_checks.append(
            {
                "version": 1,
                "openid": None,
                "scene": None,
                "content": content,
                "suggest": suggest,
                "label": label,
                "at": self._clock(),
            }
        )
        if suggest == "risky":
            return _error(87014, "risky content")
        return _json_reply({"errcode": 0, "errmsg": "ok"})

    def _msg_sec_check_v2(self, payload: JSONObject, content: str) -> Reply:
        openid, scene = payload.get("openid"), payload.get("scene")
        if not isinstance(openid, str) or not openid:
            return _error(40003, "invalid openid")
        if scene not in (1, 2, 3, 4):
            return _error(47001, "data format error")
        suggest, label, word = self._classify(content)
        self.sec_checks.append(
            {
                "version": 2,
                "openid": openid,
                "scene": scene,
                "content": content,
                "suggest": suggest,
                "label": label,
                "at": self._clock(),
            }
        )
        detail: list[JSONObject] = [
            {
                "strategy": "content_model",
                "errcode": 0,
                "suggest": suggest,
                "label": label,
                "prob": 90,
            }
        ]
        if word is not None:
            detail.append(
                {
                    "strategy": "keyword",
                    "errcode": 0,
                    "suggest": suggest,
                    "label": label,
                    "level": 20,
                    "keyword": word,
                }
            )
        return _json_reply(
            {
                "errcode": 0,
                "errmsg": "ok",
                "result": {"suggest": suggest, "label": label},
                "detail": detail,
                "trace_id": "-".join(secrets.token_hex(4) for _ in range(3)),
            }
        )

    @staticmethod
    def _classify(content: str) -> tuple[str, int, str | None]:
        folded = content.casefold()
        for word, label in RISKY_WORDS.items():
            if word in folded:
                return "risky", label, word
        for word, label in REVIEW_WORDS.items():
            if word in folded:
                return "review", label, word
        return "pass", PASS_LABEL, None
