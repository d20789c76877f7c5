"""Scan-log durability with the production shape (docs/codes.md): a serving process that runs
no jobs (``XQ_RUN_BACKGROUND_JOBS=false``) and a job process (``manage.py jobs``) beside it,
on a redis-server of the test's own. Redis restarts empty — twice, the second time while the
job process runs and the server keeps scanning — and every scan answered 200 still gets its
log line, once: the job process replays the live server's journal without taking it from
under it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.conftest import RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]

_PREPARE = """
import asyncio, json, os, sys
from bench import scan_bench
tokens, bodies = asyncio.run(scan_bench._prepare_data(dict(os.environ)))
print(json.dumps({"tokens": json.loads(tokens),
                  "bodies": {k: v.decode() for k, v in bodies.items()}}))
"""


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _logged(db: Path) -> set[str]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return {row[0] for row in conn.execute("SELECT uid FROM scan_logs")}
    finally:
        conn.close()


@pytest.fixture
def shape(own_redis: RedisServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = tmp_path / "scan.sqlite3"
    env = {**os.environ, "XQ_ENV": "development", "XQ_DATABASE_URL": f"sqlite://{db}",
           "XQ_REDIS_URL": own_redis.url, "XQ_BENCH_REDIS_URL": own_redis.url,
           "XQ_WECHAT_MODE": "stub", "XQ_LOG_REQUESTS": "false",
           "XQ_SCAN_RATE_LIMIT": "1000000", "XQ_PERSON_CODE_TTL_SECONDS": "3600",
           "XQ_SCAN_JOURNAL_DIR": str(tmp_path / "journal"), "XQ_BREAKER_OPEN_SECONDS": "1",
           "PYTHONPATH": str(ROOT)}
    prepared = subprocess.run([sys.executable, "-c", _PREPARE], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True)
    data = json.loads(prepared.stdout.strip().splitlines()[-1])
    port = free_port()
    server = _start([sys.executable, "-m", "sanic", "api.app:create_app", "--factory",
                     "--single-process", "--host", "127.0.0.1", "--port", str(port),
                     "--no-motd"], {**env, "XQ_RUN_BACKGROUND_JOBS": "false"},
                    tmp_path / "server.log")
    jobs: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(port, timeout=120)
        _wait_healthy(f"http://127.0.0.1:{port}", timeout=120)
        yield {"base": f"http://127.0.0.1:{port}", "db": db, "env": env, "server": server,
               "jobs": jobs, "data": data, "tmp": tmp_path}
    finally:
        for proc in [*jobs, server]:
            _stop(proc)


def _wait_healthy(base: str, timeout: float) -> None:
    # The port opens before the app has finished starting (pools, indexes): wait for an answer.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server never healthy")


async def _scans(c: httpx.AsyncClient, data: dict[str, Any], kind: str, n: int) -> list[str]:
    """n scans answered 200 (a 503 while the breaker is open after a restart is retried: it
    promised nothing)."""
    auth = {"Authorization": f"Bearer {data['tokens'][kind]}",
            "Content-Type": "application/json"}
    ids: list[str] = []
    deadline = time.monotonic() + 60
    while len(ids) < n:
        r = await c.post("/api/v1/codes/scan", headers=auth, content=data["bodies"][kind])
        if r.status_code == 200:
            ids.append(r.json()["scan_id"])
            continue
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, "Redis never came back for the scans"
        await asyncio.sleep(0.2)
    return ids


async def test_every_scan_answered_keeps_its_log_line_across_empty_redis_restarts(
        shape: dict[str, Any], own_redis: RedisServer) -> None:
    data, db = shape["data"], shape["db"]
    async with httpx.AsyncClient(base_url=shape["base"], timeout=30) as c:
        # No job process yet: nothing flushes the buffer, so the restart takes every line.
        answered = await _scans(c, data, "person", 40) + await _scans(c, data, "doorplate", 40)
        own_redis.kill()
        own_redis.start()
        assert _logged(db) == set()
        shape["jobs"].append(_start([sys.executable, "manage.py", "jobs"], shape["env"],
                                    shape["tmp"] / "jobs.log"))
        # The server keeps scanning (door plates: the person code died with Redis), and Redis
        # empties again while the job process runs.
        answered += await _scans(c, data, "doorplate", 30)
        own_redis.kill()
        own_redis.start()
        answered += await _scans(c, data, "doorplate", 10)
    assert len(set(answered)) == len(answered) == 120
    deadline = time.monotonic() + 90
    while not set(answered) <= _logged(db):
        assert shape["jobs"][0].poll() is None, (shape["tmp"] / "jobs.log").read_text()[-2000:]
        assert time.monotonic() < deadline, (
            f"{len(set(answered) - _logged(db))} answered scans never logged")
        await asyncio.sleep(1)
    assert shape["server"].poll() is None  # its journal was read while it kept writing
    conn = sqlite3.connect(db, timeout=10)
    try:
        per_uid = conn.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM scan_logs").fetchone()
    finally:
        conn.close()
    assert per_uid[0] == per_uid[1] >= 120
    print("\nFIGURE scan journal: 120/120 answered scans logged once across two empty Redis "
          "restarts (server without jobs + manage.py jobs)")
