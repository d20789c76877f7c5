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

# 人脸核身. The stand-in for the 公安 photo registry: ID number -> name, and whose face is
# behind a WeChat account (demo logins are their own residents). ``register_face`` adds more.
DEMO_FACES: dict[str, tuple[str, str]] = {
    # login code: (name, ID number)
    "zhang": ("张建国", "621002194103050316"),
    "li": ("李秀兰", "621021197508120426"),
    "wang": ("王小明", "621002200302170132"),
    "zhao": ("赵丽", "621026199206300246"),
    "demo-agent": ("陈志强", "62100219850412031X"),  # the demo enterprise's agent
}
FACE_SESSION_TTL_SECONDS = 3600
VERIFY_PASSED = 10000
VERIFY_ID_MISMATCH = 10003  # 身份证号与姓名不匹配
VERIFY_FACE_MISMATCH = 10004  # 比对人脸信息不匹配
# What the person in front of the phone can do in wx.requestFacialVerify besides showing a face
# (``POST /_stub/face/verify {"verify_id", "result"}``), with the verify_ret WeChat reports.
FACE_RESULTS: dict[str, int] = {
    "cancel": 90004,  # 用户在识别过程中取消
    "timeout": 90017,  # 识别过程超时
    "no_camera": 90008,  # 相机权限未授权
    "unsupported": 90001,  # 设备不支持人脸检测
    "capture_failed": 90011,  # 人脸数据采集无效
    "system_error": 90018,  # 系统错误
}
_OUT_SEQ_NO = re.compile(r"[0-9A-Za-z_-]{5,32}")


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


class FaceCheckRecord(TypedDict):
    verify_id: str
    openid: str
    face: str | None
    verify_ret: int
    at: float


@dataclass
class _FaceSession:
    appid: str
    out_seq_no: str
    openid: str
    cert_name: str
    cert_no: str
    expires_at: float
    verify_ret: int | None = None


def cert_hash(cert_type: str, cert_name: str, cert_no: str) -> str:
    """Per WeChat's docs: standard base64 of each field, ``k=v`` joined by ``&``, SHA-256 hex.
    Written here apart from services.wechat.cert_hash on purpose: the stand-in checks the
    service's hash the way WeChat would, so sharing one function would hide a bug in it."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    joined = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(joined.encode("ascii")).hexdigest()


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
        self.face_checks: list[FaceCheckRecord] = []
        self._face_sessions: dict[str, _FaceSession] = {}
        self._out_seq_nos: set[tuple[str, str]] = set()
        self.authority: dict[str, str] = {}
        self.faces: dict[str, str] = {}
        self._register_demo_faces()
        self._routes: dict[str, tuple[str, bool, Callable[..., _Outcome]]] = {
            # path: (HTTP method, needs access_token, handler)
            "/sns/jscode2session": ("GET", False, self._jscode2session),
            "/cgi-bin/token": ("GET", False, self._token),
            "/cgi-bin/stable_token": ("POST", False, self._stable_token_endpoint),
            "/cgi-bin/message/subscribe/send": ("POST", True, self._subscribe_send),
            "/wxa/getwxacodeunlimit": ("POST", True, self._wxacode_unlimit),
            "/wxa/business/getuserphonenumber": ("POST", True, self._phone_number),
            "/wxa/msg_sec_check": ("POST", True, self._msg_sec_check),
            "/cityservice/face/identify/getverifyid": ("POST", True, self._get_verify_id),
            "/cityservice/face/identify/queryverifyinfo": ("POST", True, self._query_verify_info),
            # Not WeChat's: what the phone does in wx.requestFacialVerify (see face_verify).
            "/_stub/face/verify": ("POST", False, self._face_verify_endpoint),
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

    def register_face(self, openid: str, *, name: str, id_number: str) -> None:
        """Declare who really holds the phone behind ``openid`` (and put them in the registry).
        Their face then passes for their own ID and fails (10004) for anyone else's."""
        with self._lock:
            self.authority[id_number] = name
            self.faces[openid] = id_number

    def face_verify(self, verify_id: str, *, result: str = "face",
                    face: str | None = None) -> JSONObject:
        """The user's step in ``wx.requestFacialVerify``: ``result`` "face" shows a face (the
        phone owner's, or ``face`` = the ID number of whoever is really in front of the
        camera); any key of FACE_RESULTS ends the session that way instead."""
        with self._lock:
            return self._face_verify(verify_id, result=result, face=face)

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
            self.face_checks.clear()
            self.faces.clear()
            self.authority.clear()
            self._register_demo_faces()

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
                    "face_checks": self.face_checks,
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

    # ------------------------------------------------------------ 人脸核身

    def _register_demo_faces(self) -> None:
        for code, (name, id_number) in DEMO_FACES.items():
            self.authority[id_number] = name
            self.faces[self.openid_for(code)] = id_number

    def _get_verify_id(self, appid: str, body: bytes) -> Reply:
        payload = _parse_json_object(body)
        if payload is None:
            return _error(47001, "data format error")
        out_seq_no, openid, cert = (payload.get("out_seq_no"), payload.get("openid"),
                                    payload.get("cert_info"))
        if not isinstance(out_seq_no, str) or not _OUT_SEQ_NO.fullmatch(out_seq_no):
            return _error(47003, "argument invalid! out_seq_no")
        if not isinstance(openid, str) or not openid:
            return _error(40003, "invalid openid")
        if not isinstance(cert, dict) or cert.get("cert_type") != "IDENTITY_CARD":
            return _error(47003, "argument invalid! cert_info.cert_type")
        name, number = cert.get("cert_name"), cert.get("cert_no")
        if not isinstance(name, str) or not name or not isinstance(number, str) or not number:
            return _error(47003, "argument invalid! cert_info")
        if (appid, out_seq_no) in self._out_seq_nos:
            return _error(47003, "argument invalid! out_seq_no duplicated")
        self._out_seq_nos.add((appid, out_seq_no))
        verify_id = "fv_" + secrets.token_urlsafe(24)
        self._face_sessions[verify_id] = _FaceSession(
            appid=appid, out_seq_no=out_seq_no, openid=openid, cert_name=name, cert_no=number,
            expires_at=self._clock() + FACE_SESSION_TTL_SECONDS)
        return _json_reply({"errcode": 0, "errmsg": "ok", "verify_id": verify_id,
                            "expires_in": FACE_SESSION_TTL_SECONDS})

    def _query_verify_info(self, appid: str, body: bytes) -> Reply:
        payload = _parse_json_object(body)
        if payload is None:
            return _error(47001, "data format error")
        session = self._face_sessions.get(str(payload.get("verify_id", "")))
        if session is None or session.appid != appid:
            return _error(84001, "invalid verify_id")
        # WeChat checks cert_info and openid and answers an errcode, not a verify_ret, when
        # they differ: the result can't be replayed for another identity or account.
        if payload.get("out_seq_no") != session.out_seq_no:
            return _error(47003, "argument invalid! out_seq_no not match")
        if payload.get("openid") != session.openid:
            return _error(40003, "invalid openid")
        expected = cert_hash("IDENTITY_CARD", session.cert_name, session.cert_no)
        if payload.get("cert_hash") != expected:
            return _error(47003, "argument invalid! cert_hash not match")
        if session.verify_ret is None:
            # The user has not been through the face step yet: no result to report.
            return _json_reply({"errcode": 0, "errmsg": "ok"})
        return _json_reply({"errcode": 0, "errmsg": "ok", "verify_ret": session.verify_ret})

    def _face_verify_endpoint(self, _query: Mapping[str, str], body: bytes) -> Reply:
        payload = _parse_json_object(body)
        if payload is None or not isinstance(payload.get("verify_id"), str):
            return _error(47001, "data format error")
        result = payload.get("result", "face")
        face = payload.get("face")
        if not isinstance(result, str) or (face is not None and not isinstance(face, str)):
            return _error(47001, "data format error")
        return _json_reply(self._face_verify(payload["verify_id"], result=result, face=face))

    def _face_verify(self, verify_id: str, *, result: str, face: str | None) -> JSONObject:
        session = self._face_sessions.get(verify_id)
        if session is None:
            return {"errcode": 84001, "errmsg": "invalid verify_id"}
        if session.expires_at <= self._clock():
            return {"errcode": 84002, "errmsg": "verify_id expired"}
        if session.verify_ret is not None:
            return {"errcode": 84003, "errmsg": "verify_id already used"}
        if result == "face":
            shown = face if face is not None else self.faces.get(session.openid)
            if shown is None or shown != session.cert_no:
                ret = VERIFY_FACE_MISMATCH
            elif self.authority.get(session.cert_no, session.cert_name) != session.cert_name:
                ret = VERIFY_ID_MISMATCH
            else:
                ret = VERIFY_PASSED
        elif result in FACE_RESULTS:
            ret, shown = FACE_RESULTS[result], None
        else:
            return {"errcode": 47003, "errmsg": "argument invalid! result"}
        session.verify_ret = ret
        self.face_checks.append({"verify_id": verify_id, "openid": session.openid, "face": shown,
                                 "verify_ret": ret, "at": self._clock()})
        return {"errcode": 0, "errmsg": "ok", "verify_ret": ret}
