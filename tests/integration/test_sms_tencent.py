"""The 腾讯云 SendSms client against a protocol-level stand-in PROCESS
(``miniprogram_stub.sms_server``): the signature is recomputed there from the shared secret,
so a wrong canonical request, header or key is refused the way the real endpoint refuses it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from models.messages import Message
from models.users import User
from services import notifications, people, sms

ROOT = Path(__file__).resolve().parents[2]
SECRET_ID = "AKIDtest0000000000000000"
SECRET_KEY = "test-secret-key-for-the-stand-in"
APP_ID = "1400123456"


@pytest.fixture(scope="module")
def sms_server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "miniprogram_stub.sms_server", "--port", "0",
         "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY, "--app-id", APP_ID],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening "), line
        yield f"http://127.0.0.1:{line.split()[1]}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server(sms_server: str) -> str:
    requests.post(sms_server + "_stub/reset", timeout=5)
    return sms_server


def _client(base: str, **kw: Any) -> sms.TencentSms:
    args: dict[str, Any] = {"endpoint": base, "region": "ap-guangzhou", "secret_id": SECRET_ID,
                            "secret_key": SECRET_KEY, "sdk_app_id": APP_ID,
                            "sign_name": "庆阳小庆帮办"} | kw
    return sms.TencentSms(**args)


def _steer(base: str, how: dict[str, str]) -> None:
    requests.post(base + "_stub/fail", json=how, timeout=5).raise_for_status()


def _sent(base: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = requests.get(base + "_stub/sent", timeout=5).json()["sent"]
    return data


async def test_signed_request_is_accepted_and_recorded(server: str) -> None:
    outcome = await _client(server).send(phone="13800001234", template_id="2100001",
                                         params=["预约成功", "庆阳市政务服务中心 12-03 09:00"])
    assert outcome == sms.SmsOutcome(True, "Ok")
    [msg] = _sent(server)
    assert msg["phone"] == "+8613800001234" and msg["template_id"] == "2100001"
    assert msg["params"] == ["预约成功", "庆阳市政务服务中心 12-03 09:00"]
    assert msg["sign_name"] == "庆阳小庆帮办"


async def test_wrong_key_or_id_is_refused_like_the_real_endpoint(server: str) -> None:
    bad_key = await _client(server, secret_key="not-the-key").send(
        phone="13800001234", template_id="2100001", params=["a", "b"])
    assert bad_key == sms.SmsOutcome(False, "AuthFailure.SignatureFailure")
    bad_id = await _client(server, secret_id="AKIDother").send(
        phone="13800001234", template_id="2100001", params=["a", "b"])
    assert bad_id == sms.SmsOutcome(False, "AuthFailure.SecretIdNotFound")
    bad_app = await _client(server, sdk_app_id="1400999999").send(
        phone="13800001234", template_id="2100001", params=["a", "b"])
    assert bad_app == sms.SmsOutcome(False, "FailedOperation.SmsSdkAppIdVerifyFail")
    assert _sent(server) == []


async def test_tampered_body_fails_the_signature(server: str) -> None:
    client = _client(server)
    real_post = client._http.post

    def tamper(url: str, *, data: bytes, **kw: Any) -> Any:
        return real_post(url, data=data.replace(b"13800001234", b"13900009999"), **kw)

    client._http.post = tamper  # type: ignore[method-assign,assignment]
    outcome = await client.send(phone="13800001234", template_id="2100001", params=["a", "b"])
    assert outcome == sms.SmsOutcome(False, "AuthFailure.SignatureFailure")


async def test_provider_failures_and_outage_are_outcomes(server: str) -> None:
    _steer(server, {"code": "LimitExceeded.PhoneNumberDailyLimit"})
    outcome = await _client(server).send(phone="13800001234", template_id="1", params=[])
    assert outcome == sms.SmsOutcome(False, "LimitExceeded.PhoneNumberDailyLimit")
    _steer(server, {"error": "InternalError"})
    outcome = await _client(server).send(phone="13800001234", template_id="1", params=[])
    assert outcome == sms.SmsOutcome(False, "InternalError")
    # Nobody listening: a fast, recorded failure, not an exception.
    down = await _client("http://127.0.0.1:9/", timeout=1).send(
        phone="13800001234", template_id="1", params=[])
    assert down == sms.SmsOutcome(False, "unreachable")


async def test_notice_falls_back_through_the_real_client(server: str, fake_wechat: Any) -> None:
    sms.configure(_client(server))
    try:
        user = await User.create(openid=fake_wechat.openid_for("old-zhang"))
        await people.bind_phone(user_id=user.id, phone="13800001234")
        note = await notifications.notify(
            user_id=user.id, template="case_supplement",
            data={"title": "最低生活保障", "status": "待补正", "note": "缺户口簿"},
            dedup_key="case:1:event:2")
        assert note is not None and note.status == "skipped" and note.sms_status == "sent"
        [msg] = _sent(server)
        assert msg["phone"] == "+8613800001234"
        assert msg["params"][0] == "需要补正材料" and "缺户口簿" in msg["params"][1]
        assert await Message.filter(user_id=user.id, template="case_supplement").count() == 1
    finally:
        sms.configure(None)
