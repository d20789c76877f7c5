"""The S3 path of object storage against a real S3 HTTP server: moto's standalone server,
started here as its own process (not an in-process mock), spoken to by aiobotocore."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from models.online import Upload
from models.users import Role
from services import storage
from services.errors import AppError
from services.settings import Settings, get_settings
from tests.api.test_online_api import make_pdf


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _settings(endpoint: str, bucket: str = "xq-test") -> Settings:
    return Settings(env="test", online_storage="s3", online_s3_endpoint=endpoint,
                    online_s3_bucket=bucket, online_s3_access_key="testing",
                    online_s3_secret_key="testing", online_s3_timeout_seconds=2)


@pytest.fixture
async def s3(s3_server: str) -> Any:
    store = storage.build(_settings(s3_server))
    assert isinstance(store, storage.S3Storage)
    await store.ensure_bucket()
    storage.use(store)
    yield store
    storage.use(None)


async def test_round_trip(s3: storage.S3Storage, tmp_path: Path) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.4 hello %%EOF")
    await s3.put_file("uploads/1/a.pdf", src, "application/pdf")
    assert await s3.exists("uploads/1/a.pdf")
    assert await s3.get("uploads/1/a.pdf") == b"%PDF-1.4 hello %%EOF"
    await s3.delete("uploads/1/a.pdf")
    assert not await s3.exists("uploads/1/a.pdf")
    with pytest.raises(AppError) as info:
        await s3.get("uploads/1/a.pdf")
    assert info.value.status == 404


async def test_upload_view_and_delete_through_the_api(api: Any, s3: storage.S3Storage) -> None:
    zhang = await api.login("zhang-s3")
    img = io.BytesIO()
    Image.new("RGB", (50, 30), "white").save(img, "JPEG")
    resp = await zhang.post("/api/v1/online/uploads",
                            files={"file": ("p.jpg", img.getvalue(), "image/jpeg")})
    assert resp.status == 201, resp.text
    up = await Upload.get(id=resp.json["id"])
    assert await s3.exists(up.storage_key) and up.thumb_key and await s3.exists(up.thumb_key)
    got = await api.get(resp.json["links"]["original"])
    assert got.status == 200 and Image.open(io.BytesIO(got.body)).size == (50, 30)
    assert (await zhang.delete(f"/api/v1/online/uploads/{up.id}")).status == 200
    assert not await s3.exists(up.storage_key) and not await s3.exists(up.thumb_key)


async def test_store_down_is_a_fast_503(api: Any) -> None:
    dead = storage.build(_settings(f"http://127.0.0.1:{_free_port()}"))
    storage.use(dead)
    try:
        staff = await api.login("s3-down", Role.staff)
        started = time.monotonic()
        resp = await staff.post("/api/v1/online/uploads",
                                files={"file": ("a.pdf", make_pdf(), "application/pdf")})
        assert resp.status == 503, resp.text
        assert resp.json["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 5
        assert await Upload.all().count() == 0  # nothing recorded for bytes not stored
        tmp = Path(get_settings().online_upload_tmp_dir)
        assert not [p for p in os.listdir(tmp) if p.startswith("upload-")]
    finally:
        storage.use(None)


async def test_a_failed_delete_leaves_the_row_for_the_next_try(s3: storage.S3Storage,
                                                               tmp_path: Path) -> None:
    from models.online import UploadDeletion, UploadStatus
    from models.users import User
    from services import online
    from services.auth import Principal

    owner = await User.create(openid="o-del")
    src = tmp_path / "a.pdf"
    src.write_bytes(make_pdf())
    await s3.put_file("uploads/x/a.pdf", src, "application/pdf")
    up = await Upload.create(owner_id=owner.id, storage_key="uploads/x/a.pdf",
                             content_type="application/pdf", size=1, sha256="0" * 64)
    me = Principal(owner.id, frozenset())
    storage.use(storage.build(_settings(f"http://127.0.0.1:{_free_port()}")))
    with pytest.raises(AppError) as info:
        await online.delete_upload(actor=me, upload_id=up.id)
    assert info.value.status == 503
    assert (await Upload.get(id=up.id)).status is UploadStatus.stored
    assert not await UploadDeletion.exists(upload_id_ref=up.id)
    storage.use(s3)  # the store is back: the same request now goes through
    await online.delete_upload(actor=me, upload_id=up.id)
    assert (await Upload.get(id=up.id)).status is UploadStatus.deleted
    assert not await s3.exists("uploads/x/a.pdf")
    assert await UploadDeletion.filter(upload_id_ref=up.id, reason="owner").count() == 1
