"""人脸核身 on the stand-in platform, and services/wechat.py speaking it to the standalone stub
running as its own process (the way a deployment reaches WeChat)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from miniprogram_stub import platform as fake
from miniprogram_stub.platform import FakeWeChatPlatform
from services import wechat as wechat_service
from services.errors import AppError
from tests.unit.test_fake_platform import APPID, SECRET, Clock, call, post, stable_token

GET_ID = "/cityservice/face/identify/getverifyid"
QUERY = "/cityservice/face/identify/queryverifyinfo"
ZHANG = ("张建国", "621002194103050316")
ROOT = Path(__file__).resolve().parents[2]


def test_cert_hash_matches_wechats_worked_example() -> None:
    # The example in WeChat's queryVerifyInfo docs, computed by both sides independently.
    expected = "3c241f7ff324977aeb91f173bb2a7b06569e6fd784d5573db34a636d8671108b"
    assert fake.cert_hash("IDENTITY_CARD", "张三", "310101199801011234") == expected
    assert wechat_service.cert_hash(cert_name="张三", cert_no="310101199801011234") == expected


def _start(platform: FakeWeChatPlatform, token: str, openid: str, *, seq: str = "xqf00001",
           name: str = ZHANG[0], number: str = ZHANG[1]) -> dict[str, Any]:
    return post(platform, GET_ID, {"out_seq_no": seq, "openid": openid, "cert_info": {
        "cert_type": "IDENTITY_CARD", "cert_name": name, "cert_no": number}}, token)


def _query(platform: FakeWeChatPlatform, token: str, verify_id: str, openid: str, *,
           seq: str = "xqf00001", name: str = ZHANG[0]) -> dict[str, Any]:
    return post(platform, QUERY, {"verify_id": verify_id, "out_seq_no": seq, "openid": openid,
                                  "cert_hash": fake.cert_hash("IDENTITY_CARD", name, ZHANG[1])},
                token)


@pytest.fixture
def platform(clock: Clock) -> FakeWeChatPlatform:
    return FakeWeChatPlatform(APPID, SECRET, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_getverifyid_checks_its_fields(platform: FakeWeChatPlatform) -> None:
    token = stable_token(platform)
    openid = platform.openid_for("zhang")
    assert _start(platform, token, openid, seq="bad!")["errcode"] == 47003
    assert _start(platform, token, openid, seq="abc")["errcode"] == 47003  # 5-32 characters
    ok = _start(platform, token, openid)
    assert ok["errcode"] == 0 and ok["verify_id"] and ok["expires_in"] == 3600
    assert _start(platform, token, openid)["errcode"] == 47003  # out_seq_no is unique per appid
    no_token = call(platform, "POST", GET_ID, {}, {"out_seq_no": "xqf00002"})[2]
    assert no_token["errcode"] == 41001


def test_query_refuses_anything_but_the_started_identity(platform: FakeWeChatPlatform) -> None:
    token = stable_token(platform)
    openid = platform.openid_for("zhang")
    vid = _start(platform, token, openid)["verify_id"]
    # Nothing to report before the phone's step.
    assert "verify_ret" not in _query(platform, token, vid, openid)
    assert platform.face_verify(vid)["verify_ret"] == 10000
    assert _query(platform, token, vid, openid)["verify_ret"] == 10000
    # Another name (so another cert_hash), account, serial or session: an errcode, no verdict.
    assert _query(platform, token, vid, openid, name="张三")["errcode"] == 47003
    assert _query(platform, token, vid, platform.openid_for("li"))["errcode"] == 40003
    assert _query(platform, token, vid, openid, seq="xqf99999")["errcode"] == 47003
    assert _query(platform, token, "fv_nope", openid)["errcode"] == 84001


def test_the_face_decides(platform: FakeWeChatPlatform, clock: Clock) -> None:
    token = stable_token(platform)
    owner, stranger = platform.openid_for("zhang"), platform.openid_for("stranger")
    # The owner's face passes; a stranger's phone has no registered face (10004); a wrong
    # name with the right face is the registry's 10003.
    assert platform.face_verify(_start(platform, token, owner)["verify_id"])["verify_ret"] == 10000
    vid = _start(platform, token, stranger, seq="xqf00002")["verify_id"]
    assert platform.face_verify(vid)["verify_ret"] == 10004
    vid = _start(platform, token, owner, seq="xqf00003", name="张建民")["verify_id"]
    assert platform.face_verify(vid)["verify_ret"] == 10003
    # Someone else in front of the owner's camera.
    vid = _start(platform, token, owner, seq="xqf00004")["verify_id"]
    assert platform.face_verify(vid, face="621021197508120426")["verify_ret"] == 10004
    assert platform.face_verify(vid)["errcode"] == 84003  # one face step per session
    for seq, (result, ret) in enumerate(fake.FACE_RESULTS.items(), start=10):
        vid = _start(platform, token, owner, seq=f"xqf000{seq}")["verify_id"]
        assert platform.face_verify(vid, result=result)["verify_ret"] == ret
    vid = _start(platform, token, owner, seq="xqf00099")["verify_id"]
    clock.now += fake.FACE_SESSION_TTL_SECONDS + 1
    assert platform.face_verify(vid)["errcode"] == 84002
    # reset() forgets registered faces but keeps the demo residents'.
    platform.register_face(stranger, name="孙丽", id_number="621002199001010025")
    platform.reset()
    assert stranger not in platform.faces and platform.faces[owner] == ZHANG[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stub_server() -> Any:
    """``python -m miniprogram_stub.server`` as its own process: the protocol-level stand-in."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "miniprogram_stub.server", "--port", str(port),
         "--appid", APPID, "--secret", SECRET],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "_stub/sent", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_gateway_speaks_face_verification_to_the_stub_process(stub_server: str) -> None:
    gateway = wechat_service.WeChat(appid=APPID, secret=SECRET,
                                    adapter=wechat_service.RebaseAdapter(stub_server))
    openid = FakeWeChatPlatform(APPID).openid_for("zhang")  # the process's openid for "zhang"
    session = await gateway.face_verify_id(out_seq_no="xqf0proc1", openid=openid,
                                           cert_name=ZHANG[0], cert_no=ZHANG[1])
    ask = {"verify_id": session.verify_id, "out_seq_no": "xqf0proc1", "openid": openid,
           "cert_name": ZHANG[0], "cert_no": ZHANG[1]}
    assert await gateway.face_verify_result(**ask) == 0  # no result yet
    async with httpx.AsyncClient() as http:
        step = await http.post(stub_server + "_stub/face/verify",
                               json={"verify_id": session.verify_id})
    assert step.json()["verify_ret"] == 10000
    assert await gateway.face_verify_result(**ask) == 10000
    # A finish claiming another identity is refused by the platform: no verdict at all.
    assert await gateway.face_verify_result(**{**ask, "cert_name": "李四"}) is None
    # A duplicate serial is the platform refusing getVerifyId: a 503 for the caller.
    with pytest.raises(AppError) as exc:
        await gateway.face_verify_id(out_seq_no="xqf0proc1", openid=openid,
                                     cert_name=ZHANG[0], cert_no=ZHANG[1])
    assert exc.value.status == 503
