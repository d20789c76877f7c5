"""Start a real server, walk the journeys against it over HTTP, fuzz its OpenAPI document, stop.

``python -m miniprogram_stub.live`` — the embedded default (SQLite + in-process Redis, one
process). ``--real`` — a throwaway MariaDB database and a real Redis db with several workers,
which is what proves nothing a request needs lives in one worker's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from services import db

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def _fuzz(base: str, max_examples: int) -> int:
    token = httpx.post(base + "/api/v1/auth/wechat-login", json={"code": "demo-admin"},
                       timeout=10).json()["access_token"]
    exe = shutil.which("schemathesis") or str(Path(PYTHON).parent / "schemathesis")
    cmd = [
        exe, "run", base + "/docs/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "-H", f"Authorization: Bearer {token}",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(max_examples),
        "--workers", "2",
        "--request-timeout", "10",
        "--suppress-health-check", "all",
        "--warnings", "off",
    ]
    print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer …" for c in cmd))
    return subprocess.call(cmd, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", action="store_true", help="MariaDB + Redis, several workers")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fuzz", action="store_true", help="also run schemathesis")
    parser.add_argument("--max-examples", type=int, default=15)
    args = parser.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="xq-live-"))
    env = {**os.environ, "XQ_ENV": "development", "XQ_LOGIN_RATE_LIMIT": "100000",
           "XQ_LOG_REQUESTS": "false", "PYTHONUNBUFFERED": "1",
           # The scan-log journal belongs with this run's throwaway database: lines journalled
           # by an earlier run name users and halls this database doesn't have.
           "XQ_SCAN_JOURNAL_DIR": str(tmp / "scanlog")}
    db_name = ""
    mysql_url = os.environ.get("XQ_TEST_MYSQL_URL", "mysql://root:@127.0.0.1:3306")
    if args.real:
        db_name = f"xq_live_{uuid.uuid4().hex[:8]}"
        env["XQ_DATABASE_URL"] = asyncio.run(db.create_database(mysql_url, db_name))
        env["XQ_REDIS_URL"] = os.environ.get("XQ_LIVE_REDIS_URL", "redis://127.0.0.1:6379/11")
        workers = ["--workers", str(args.workers)]
    else:
        env["XQ_DATABASE_URL"] = f"sqlite://{tmp / 'live.sqlite3'}"
        env["XQ_REDIS_URL"] = "memory://"
        workers = ["--single-process"]
    proc: subprocess.Popen[bytes] | None = None
    log = (tmp / "server.log").open("wb")
    failed = True
    try:
        if args.real:
            import redis

            redis.Redis.from_url(env["XQ_REDIS_URL"]).flushdb()
        for step in (["migrate"], ["seed"]):
            subprocess.run([PYTHON, "manage.py", *step], cwd=ROOT, env=env, check=True)
        proc = subprocess.Popen(
            [PYTHON, "-m", "sanic", "api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), *workers, "--no-motd"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_ready(base, proc)
        mode = f"MariaDB + Redis, {args.workers} workers" if args.real else "embedded, 1 process"
        print(f"live server at {base} ({mode})")
        rc = subprocess.call([PYTHON, "-m", "miniprogram_stub.journeys", "--base-url", base],
                             cwd=ROOT, env=env)
        if args.fuzz:
            rc = _fuzz(base, args.max_examples) or rc
        failed = rc != 0
        return rc
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        if failed:
            print("--- server log (tail) ---")
            print((tmp / "server.log").read_text(errors="replace")[-6000:])
        if db_name:
            asyncio.run(db.drop_database(mysql_url, db_name))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
