"""A stand-in for 腾讯云 SMS (``SendSms``, API 3.0, version 2021-01-11), speaking its protocol:
``python -m miniprogram_stub.sms_server --port 9200 --secret-id AKID... --secret-key ...``.

It checks what the real endpoint checks first — the TC3-HMAC-SHA256 signature (recomputed
here from the shared secret, independently of the client's code), the timestamp's freshness,
the action/version headers and the SendSms parameters — and answers in Tencent Cloud's shape:
``{"Response": {"SendStatusSet": [...], "RequestId"}}`` or ``{"Response": {"Error": {...}}}``.
Accepted messages are recorded. ``/_stub/*`` lets tests inspect and steer it:
``GET /_stub/sent``, ``POST /_stub/reset``, ``POST /_stub/fail {"code": "..."}`` (every number
answers that code; ``{"error": "..."}`` fails whole requests; ``{}`` heals).
Prints ``listening <port>`` once ready (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<sid>[^/]+)/(?P<day>\d{4}-\d{2}-\d{2})/(?P<svc>[a-z]+)/"
    r"tc3_request, SignedHeaders=(?P<hdrs>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
_PHONE = re.compile(r"^\+861\d{10}$")


class SmsState:
    def __init__(self, *, secret_id: str, secret_key: str, app_id: str) -> None:
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.app_id = app_id
        self.lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.fail_code: str | None = None
        self.fail_error: str | None = None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(*, secret_key: str, headers: dict[str, str], signed: list[str],
                       body: bytes, timestamp: int, day: str, service: str) -> str:
    def value(h: str) -> str:
        # The action is signed lower-cased; the other headers as sent.
        v = headers.get(h, "").strip()
        return v.lower() if h == "x-tc-action" else v

    canonical_headers = "".join(f"{h}:{value(h)}\n" for h in signed)
    canonical = "\n".join(["POST", "/", "", canonical_headers, ";".join(signed),
                           hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), day), service), "tc3_request")
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message},
                         "RequestId": str(uuid.uuid4())}}


def handle_send(state: SmsState, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The SendSms check order: signature and headers, then parameters, then per number."""
    auth = _AUTH.match(headers.get("authorization", ""))
    if auth is None:
        return _error("AuthFailure.InvalidAuthorization", "Authorization header is malformed")
    if auth["sid"] != state.secret_id:
        return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found")
    try:
        ts = int(headers.get("x-tc-timestamp", ""))
    except ValueError:
        return _error("MissingParameter", "X-TC-Timestamp is missing")
    if abs(time.time() - ts) > 300:
        return _error("AuthFailure.SignatureExpire", "Signature expired")
    day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
    signed = auth["hdrs"].split(";")
    if auth["day"] != day or auth["svc"] != "sms" or "content-type" not in signed \
            or "host" not in signed:
        return _error("AuthFailure.SignatureFailure", "The provided credential is not valid")
    want = expected_signature(secret_key=state.secret_key, headers=headers, signed=signed,
                              body=body, timestamp=ts, day=day, service="sms")
    if not hmac.compare_digest(want, auth["sig"]):
        return _error("AuthFailure.SignatureFailure", "The provided signature is not valid")
    if headers.get("x-tc-action") != "SendSms":
        return _error("InvalidAction", "The action is not supported")
    if headers.get("x-tc-version") != "2021-01-11":
        return _error("NoSuchVersion", "The version is not supported")
    if not headers.get("x-tc-region"):
        return _error("MissingParameter", "X-TC-Region is missing")
    try:
        req = json.loads(body)
    except ValueError:
        return _error("InvalidParameter", "The body is not JSON")
    if not isinstance(req, dict):
        return _error("InvalidParameter", "The body is not an object")
    if req.get("SmsSdkAppId") != state.app_id:
        return _error("FailedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId is not valid")
    if not req.get("SignName"):
        return _error("FailedOperation.SignatureIncorrectOrUnapproved", "SignName is missing")
    if not req.get("TemplateId"):
        return _error("FailedOperation.TemplateIncorrectOrUnapproved", "TemplateId is missing")
    params = req.get("TemplateParamSet", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return _error("InvalidParameterValue.TemplateParameterFormatError",
                      "TemplateParamSet must be strings")
    phones = req.get("PhoneNumberSet")
    if not isinstance(phones, list) or not 1 <= len(phones) <= 200:
        return _error("InvalidParameterValue.IncorrectPhoneNumber", "PhoneNumberSet is empty")
    with state.lock:
        if state.fail_error:
            return _error(state.fail_error, "Induced failure")
        statuses = []
        for phone in phones:
            if not isinstance(phone, str) or not _PHONE.match(phone):
                code, msg = "InvalidParameterValue.IncorrectPhoneNumber", "bad phone number"
            elif state.fail_code:
                code, msg = state.fail_code, "Induced failure"
            else:
                code, msg = "Ok", "send success"
                state.sent.append({"phone": phone, "template_id": req["TemplateId"],
                                   "sign_name": req["SignName"], "params": params,
                                   "at": time.time()})
            statuses.append({"SerialNo": uuid.uuid4().hex, "PhoneNumber": phone, "Fee": 1,
                             "SessionContext": "", "Code": code, "Message": msg,
                             "IsoCode": "CN"})
    return {"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}}


def make_handler(state: SmsState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, payload: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path == "/_stub/sent":
                with state.lock:
                    self._reply({"sent": list(state.sent)})
            else:
                self._reply({"error": "not found"}, 404)

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/_stub/reset":
                with state.lock:
                    state.sent.clear()
                    state.fail_code = state.fail_error = None
                self._reply({"ok": True})
            elif self.path == "/_stub/fail":
                steer = json.loads(body or b"{}")
                with state.lock:
                    state.fail_code = steer.get("code") or None
                    state.fail_error = steer.get("error") or None
                self._reply({"ok": True})
            elif self.path == "/":
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._reply(handle_send(state, headers, body))
            else:
                self._reply({"error": "not found"}, 404)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--secret-id", default="AKIDstubstubstubstub")
    parser.add_argument("--secret-key", default="stub-secret-key")
    parser.add_argument("--app-id", default="1400000000")
    args = parser.parse_args()
    state = SmsState(secret_id=args.secret_id, secret_key=args.secret_key, app_id=args.app_id)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
