"""Peak memory of the server while it receives a 20 MB upload (wx.uploadFile: multipart).

    python -m bench.upload_bench [--mb 20] [--port 8791]

Starts the real server (Sanic, one process, SQLite + in-process Redis + stub WeChat, a
throwaway folder for the database and the object store), logs in, and sends:
1. a small PDF (warm-up: imports, first connection, first request);
2. a ``--mb`` MB PDF (a scanned page), streamed from the client in 64 KiB chunks;
3. a JPEG of about ``--mb`` MB (noise: it barely compresses), which the server must decode
   and re-encode.
After each it reads the server's peak resident set size (VmHWM in /proc/<pid>/status), so the
figures are the server's own memory, not this client's. Prints the peak growth each upload
caused; no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def _pdf(size: int) -> bytes:
    """A real one-page PDF of about ``size`` bytes: a noise JPEG embedded as the page (a
    scanned document, as residents send them)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    image = pdfium.PdfImage.new(doc)
    image.load_jpeg(io.BytesIO(_noisy_jpeg(size)), inline=True)
    image.set_matrix(pdfium.PdfMatrix().scale(595, 842))
    page = doc.new_page(595, 842)
    page.insert_obj(image)
    page.gen_content()
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _noisy_jpeg(target: int) -> bytes:
    from PIL import Image

    side = 1000
    while True:
        img = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=95)
        if out.tell() >= target or side >= 6000:
            return out.getvalue()
        side = int(side * (target / out.tell()) ** 0.5) + 50


async def _multipart(data: bytes, name: str, ctype: str, boundary: str) -> AsyncIterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n").encode()
    view = memoryview(data)
    for i in range(0, len(data), 64 * 1024):
        yield bytes(view[i:i + 64 * 1024])
    yield f"\r\n--{boundary}--\r\n".encode()


async def _upload(http: httpx.AsyncClient, token: str, data: bytes, name: str,
                  ctype: str) -> tuple[int, float, str]:
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    started = time.perf_counter()
    resp = await http.post(
        "/api/v1/online/uploads", content=_multipart(data, name, ctype, boundary),
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    return resp.status_code, time.perf_counter() - started, resp.text[:120]


async def _run(args: argparse.Namespace, pid: int, base: str) -> None:
    size = args.mb * 1024 * 1024
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        for _ in range(100):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        login = await http.post("/api/v1/auth/wechat-login", json={"code": "bench-uploader"})
        token = login.json()["access_token"]
        status, secs, _ = await _upload(http, token, _pdf(200 * 1024), "warm.pdf",
                                        "application/pdf")
        base_peak = _vm(pid, "VmHWM")
        print(f"server after warm-up: peak RSS {base_peak / 2**20:.1f} MiB (status {status})")
        cases = [("pdf", _pdf(size), "big.pdf", "application/pdf")]
        jpeg = _noisy_jpeg(size)
        cases.append(("jpeg", jpeg, "big.jpg", "image/jpeg"))
        for label, data, name, ctype in cases:
            before = _vm(pid, "VmHWM")
            status, secs, text = await _upload(http, token, data, name, ctype)
            peak = _vm(pid, "VmHWM")
            print(f"{label:4} {len(data) / 2**20:5.1f} MiB upload: status {status}, {secs:.2f} s, "
                  f"server peak RSS {peak / 2**20:.1f} MiB "
                  f"(+{(peak - before) / 2**20:.1f} MiB over the previous peak)"
                  + ("" if status == 201 else f" {text}"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XQ_ENV": "development",
               "XQ_DATABASE_URL": f"sqlite://{tmp}/bench.sqlite3", "XQ_REDIS_URL": "memory://",
               "XQ_LOG_REQUESTS": "false", "XQ_RUN_BACKGROUND_JOBS": "false",
               "XQ_ONLINE_STORAGE_DIR": f"{tmp}/objects", "XQ_ONLINE_UPLOAD_TMP_DIR": f"{tmp}/up",
               "XQ_ONLINE_UPLOAD_MAX_BYTES": str((args.mb + 2) * 1024 * 1024)}
        subprocess.run([sys.executable, "-c", (
            "import asyncio\nfrom tortoise import Tortoise\nfrom services import db\n"
            "async def m():\n"
            f"    await Tortoise.init(config=db.tortoise_config('sqlite://{tmp}/bench.sqlite3'))\n"
            "    await Tortoise.generate_schemas()\n    await Tortoise.close_connections()\n"
            "asyncio.run(m())\n")], env=env, check=True)
        server = subprocess.Popen(
            [sys.executable, "-m", "sanic", "api.app:create_app", "--factory",
             "--single-process", "--host", "127.0.0.1", "--port", str(args.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(_run(args, server.pid, f"http://127.0.0.1:{args.port}"))
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
