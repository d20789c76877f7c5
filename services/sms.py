"""SMS through a provider interface: the fallback when a notice that matters can't go by WeChat.

``RecordingSms`` (the default) keeps what it would have sent, for development and tests;
``TencentSms`` calls 腾讯云 SMS ``SendSms`` (API 3.0, version 2021-01-11) signed with
TC3-HMAC-SHA256. Like WeChat, the HTTP call is synchronous (``requests``) and runs in a worker
thread. A provider never raises for a refusal or an outage: the notice is already in the
person's message centre, so the outcome is recorded and the caller goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import requests

from services.settings import Settings, get_settings

log = logging.getLogger(__name__)

SMS_VERSION = "2021-01-11"
SMS_SERVICE = "sms"


@dataclass(frozen=True)
class SmsOutcome:
    ok: bool
    detail: str


class SmsProvider(Protocol):
    async def send(self, *, phone: str, template_id: str, params: list[str]) -> SmsOutcome: ...


@dataclass
class SentSms:
    phone: str
    template_id: str
    params: list[str]


@dataclass
class RecordingSms:
    """Sends nothing; remembers what it was asked to send (and can be told to fail)."""

    sent: list[SentSms] = field(default_factory=list)
    fail_with: str | None = None

    async def send(self, *, phone: str, template_id: str, params: list[str]) -> SmsOutcome:
        if self.fail_with:
            return SmsOutcome(False, self.fail_with)
        self.sent.append(SentSms(phone, template_id, list(params)))
        log.info("sms recorded (stub provider)", extra={"template_id": template_id})
        return SmsOutcome(True, "recorded")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(*, secret_id: str, secret_key: str, host: str, action: str,
                      payload: bytes, timestamp: int, service: str = SMS_SERVICE) -> str:
    """The Authorization header of TencentCloud API signature v3 (TC3-HMAC-SHA256)."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    signed_headers = "content-type;host;x-tc-action"
    canonical = "\n".join([
        "POST", "/", "",
        f"content-type:application/json; charset=utf-8\nhost:{host}\n"
        f"x-tc-action:{action.lower()}\n",
        signed_headers,
        hashlib.sha256(payload).hexdigest(),
    ])
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), day), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")


class TencentSms:
    def __init__(self, *, endpoint: str, region: str, secret_id: str, secret_key: str,
                 sdk_app_id: str, sign_name: str, timeout: float = 5) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.host = urlparse(self.endpoint).netloc
        self.region = region
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.timeout = timeout
        self._http = requests.Session()

    def _post(self, *, phone: str, template_id: str, params: list[str]) -> dict[str, Any]:
        body = json.dumps({
            "PhoneNumberSet": [phone if phone.startswith("+") else "+86" + phone],
            "SmsSdkAppId": self.sdk_app_id, "SignName": self.sign_name,
            "TemplateId": template_id, "TemplateParamSet": params,
        }, ensure_ascii=False).encode("utf-8")
        ts = int(time.time())
        headers = {
            "Authorization": tc3_authorization(
                secret_id=self.secret_id, secret_key=self.secret_key, host=self.host,
                action="SendSms", payload=body, timestamp=ts),
            "Content-Type": "application/json; charset=utf-8",
            "Host": self.host,
            "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(ts),
            "X-TC-Version": SMS_VERSION,
            "X-TC-Region": self.region,
        }
        resp = self._http.post(self.endpoint, data=body, headers=headers, timeout=self.timeout)
        data: dict[str, Any] = resp.json()
        return data

    async def send(self, *, phone: str, template_id: str, params: list[str]) -> SmsOutcome:
        try:
            data = await asyncio.to_thread(self._post, phone=phone, template_id=template_id,
                                           params=params)
        except (requests.RequestException, ValueError) as exc:
            log.warning("sms provider unreachable: %s", type(exc).__name__)
            return SmsOutcome(False, "unreachable")
        response = data.get("Response", {})
        if "Error" in response:
            return SmsOutcome(False, str(response["Error"].get("Code", "error"))[:200])
        statuses = response.get("SendStatusSet") or [{}]
        code = str(statuses[0].get("Code", "missing"))
        return SmsOutcome(code == "Ok", code[:200])


def build(settings: Settings) -> SmsProvider:
    if settings.sms_mode == "tencent":
        return TencentSms(endpoint=settings.sms_endpoint, region=settings.sms_region,
                          secret_id=settings.sms_secret_id, secret_key=settings.sms_secret_key,
                          sdk_app_id=settings.sms_sdk_app_id, sign_name=settings.sms_sign_name,
                          timeout=settings.sms_timeout_seconds)
    return RecordingSms()


_provider: SmsProvider | None = None


def configure(provider: SmsProvider | None) -> None:
    """Tests mount a provider; None goes back to the one the settings describe."""
    global _provider
    _provider = provider


def provider() -> SmsProvider:
    global _provider
    if _provider is None:
        _provider = build(get_settings())
    return _provider
