"""The virus-scan hook in clamd mode, against a clamd protocol stand-in running as its own
process (tests/integration/fake_clamd.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.online import Upload
from services import storage
from services.settings import get_settings
from tests.api.test_online_api import make_pdf
from tests.integration.fake_clamd import EICAR
from tests.integration.test_online_s3 import _free_port

PDF = make_pdf()


@pytest.fixture(scope="module")
def clamd() -> Iterator[str]:
    port = _free_port()
    script = Path(__file__).with_name("fake_clamd.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def scanning(clamd: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    settings = get_settings()
    monkeypatch.setattr(settings, "online_virus_scan", "clamd")
    monkeypatch.setattr(settings, "online_clamd_address", clamd)
    storage.use(storage.LocalStorage(tmp_path))
    yield
    storage.use(None)


async def test_clean_file_stored_infected_refused(api: Any, scanning: None) -> None:
    zhang = await api.login("zhang-av")
    ok = await zhang.post("/api/v1/online/uploads", files={"file": ("a.pdf", PDF)})
    assert ok.status == 201, ok.text
    bad = PDF[:-7] + EICAR + b"\n%%EOF\n"
    resp = await zhang.post("/api/v1/online/uploads", files={"file": ("b.pdf", bad)})
    assert resp.status == 422 and resp.json["error"]["code"] == "upload_infected"
    assert await Upload.all().count() == 1


async def test_scanner_down_refuses_with_503(api: Any, scanning: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "online_clamd_address", f"127.0.0.1:{_free_port()}")
    zhang = await api.login("zhang-av2")
    resp = await zhang.post("/api/v1/online/uploads", files={"file": ("a.pdf", PDF)})
    assert resp.status == 503 and resp.json["error"]["code"] == "unavailable"
    assert await Upload.all().count() == 0
