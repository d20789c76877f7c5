"""The served app (two Sanic workers) on a MariaDB and a redis-server of the test's own:
MariaDB frozen and killed mid-commit, a worker SIGKILLed. Proves: a 503 within a bound during
each outage, readiness naming the dependency, Idempotency-Keys released and retries answered
with the original result, a killed worker replaced, and the old invariants (no overbooking,
counters equal rows, acknowledged = stored). Figures go to docs/reliability.md (run with -s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pymysql  # type: ignore[import-untyped]
import pytest

from tests.faults.conftest import MariaDB, RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HALL, ITEM = "H-XF-000", "GA-001"
RESIDENTS = {"zhang": ("张建国", "621002194103050316"), "li": ("李秀兰", "621021197508120426"),
             "wang": ("王小明", "621002200302170132"), "zhao": ("赵丽", "621026199206300246")}
DEADLINE = 3.0
LEASE = 5.0

_PREPARE = """
import asyncio
from tortoise import Tortoise
from services import cache, db, seed
from services.settings import get_settings
async def main():
    await Tortoise.init(config=db.tortoise_config(), _enable_global_fallback=True)
    await Tortoise.generate_schemas()
    await cache.open_cache(get_settings().redis_url)  # seeding tells workers what changed
    await seed.run()
    from miniprogram_stub import demo_accounts  # zhang, li, wang, zhao: face-verified residents
    await demo_accounts.seed(get_settings().wechat_appid)
    await cache.close_cache()
    await Tortoise.close_connections()
asyncio.run(main())
"""


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    mariadb: MariaDB
    redis: RedisServer

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        conn = pymysql.connect(host="127.0.0.1", port=self.mariadb.port, user="root",
                               database="xq", connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())
        finally:
            conn.close()

    def workers(self) -> list[int]:
        """The server workers: children of the manager that Sanic named Sanic-Server-*."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if ppid != self.proc.pid:
                    continue
                env = (stat.parent / "environ").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if b"SANIC_WORKER_NAME=Sanic-Server" in env:
                found.append(int(stat.parent.name))
        return sorted(found)


@pytest.fixture(scope="module")
def served(own_mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis = RedisServer()
    redis.start()
    pymysql.connect(host="127.0.0.1", port=own_mariadb.port, user="root").cursor().execute(
        "CREATE DATABASE IF NOT EXISTS xq CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    env = {**os.environ, "XQ_ENV": "development",
           "XQ_DATABASE_URL": f"{own_mariadb.url}/xq", "XQ_REDIS_URL": redis.url,
           "XQ_REQUEST_DEADLINE_SECONDS": str(DEADLINE), "XQ_DB_ACQUIRE_TIMEOUT_SECONDS": "1",
           "XQ_DB_CONNECT_TIMEOUT_SECONDS": "1", "XQ_BREAKER_OPEN_SECONDS": "1",
           "XQ_IDEMPOTENCY_LEASE_SECONDS": str(LEASE), "XQ_LOG_REQUESTS": "false",
           "XQ_APPOINTMENT_BOOK_RATE_LIMIT": "1000"}
    subprocess.run([PYTHON, "-c", _PREPARE], cwd=ROOT, env=env, check=True)
    port = free_port()
    log = (tmp_path_factory.mktemp("served") / "server.log").open("wb")
    proc = subprocess.Popen(
        [PYTHON, "-m", "sanic", "api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--no-motd"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    s = Served(base=f"http://127.0.0.1:{port}", proc=proc, mariadb=own_mariadb, redis=redis)
    try:
        wait_port(port, timeout=90)
        _wait_ready(s, timeout=90)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful; SIGINT to the manager alone can hang
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        redis.kill()


def _wait_ready(s: Served, timeout: float) -> float:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            if httpx.get(s.base + "/readyz", timeout=3).status_code == 200:
                return time.monotonic() - t
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server not ready")


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base, timeout=15) as c:
        yield c


async def _login(c: httpx.AsyncClient, code: str) -> dict[str, str]:
    r = await c.post("/api/v1/auth/wechat-login", json={"code": code})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    # The demo residents come face-verified (seeded above): identity is proven, not typed.
    me = await c.get("/api/v1/me", headers=auth)
    assert code in RESIDENTS and me.json()["identity_level"] == "face", me.text
    return auth


async def _slots(c: httpx.AsyncClient, auth: dict[str, str], n: int) -> list[int]:
    found: list[int] = []
    for ahead in range(1, 10):
        day = (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=ahead))
        r = await c.get(f"/api/v1/halls/{HALL}/slots", headers=auth,
                        params={"date": day.isoformat(), "item_code": ITEM})
        found += [s["id"] for s in r.json()["slots"] if s["bookable"]]
        if len(found) >= n:
            return found[:n]
    raise AssertionError("not enough bookable slots")


async def _book(c: httpx.AsyncClient, auth: dict[str, str], slot_id: int,
                key: str) -> httpx.Response:
    return await c.post("/api/v1/appointments", headers={**auth, "Idempotency-Key": key},
                        json={"slot_id": slot_id, "item_code": ITEM})


async def _retry_until_answered(c: httpx.AsyncClient, auth: dict[str, str], slot_id: int,
                                key: str, within: float) -> httpx.Response:
    end = time.monotonic() + within
    last: Any = None
    while True:
        try:
            r = await _book(c, auth, slot_id, key)
            if r.status_code != 503 and not (r.status_code == 409 and
                                              r.json()["error"]["code"] == "conflict"):
                return r  # anything but "unavailable" or "still in progress" is the answer
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        if time.monotonic() > end:
            raise AssertionError(f"key {key} never answered: {last}")
        await asyncio.sleep(0.3)


def _invariants(s: Served) -> None:
    over = s.sql("SELECT id FROM appointment_slots "
                 "WHERE general_booked + green_booked > general_capacity + green_hold")
    assert over == [], "overbooked"
    drift = s.sql("""
        SELECT s.id, s.general_booked + s.green_booked AS counted, COUNT(a.id) AS held
        FROM appointment_slots s LEFT JOIN appointments a ON a.slot_id = s.id AND a.holding = 1
        GROUP BY s.id, counted HAVING counted <> held""")
    assert drift == [], f"counters differ from rows: {drift}"


async def test_frozen_database_is_a_bounded_503_and_the_key_is_answered_after(
    served: Served, client: httpx.AsyncClient
) -> None:
    auth = await _login(client, "zhang")
    slot = (await _slots(client, auth, 1))[0]
    key = uuid.uuid4().hex
    served.mariadb.freeze()
    frozen_at = time.monotonic()
    try:
        t = time.monotonic()
        first = await _book(client, auth, slot, key)
        first_s = time.monotonic() - t
        assert first.status_code == 503 and first.json()["error"]["code"] == "unavailable"
        assert "retry-after" in first.headers
        assert first_s < DEADLINE + 1.5
        during = []
        for _ in range(20):
            t = time.monotonic()
            r = await client.get("/api/v1/appointments", headers=auth)
            during.append((r.status_code, time.monotonic() - t))
        t = time.monotonic()
        ready = await client.get("/readyz")
        ready_s = time.monotonic() - t
        assert ready.status_code == 503 and "database" in ready.json()["down"]
        assert ready_s < 3
        assert all(status == 503 for status, _ in during)
        assert max(d for _, d in during) < DEADLINE + 1.5
    finally:
        served.mariadb.thaw()
    thawed = time.monotonic()
    answer = await _retry_until_answered(client, auth, slot, key, within=LEASE + 15)
    recovered = time.monotonic() - thawed
    assert answer.status_code == 201, answer.text
    again = await _book(client, auth, slot, key)
    assert again.status_code == 201 and again.json()["id"] == answer.json()["id"]
    rows = served.sql(f"SELECT COUNT(*) FROM appointments a JOIN users u ON u.person_id = "
                      f"a.person_id WHERE a.slot_id = {slot} AND a.holding = 1")
    assert rows == [(1,)]
    _invariants(served)
    fast = sum(1 for _, d in during if d < 0.5)
    print(f"\nFIGURE mariadb frozen {thawed - frozen_at:.1f}s: first booking 503 after "
          f"{first_s:.2f}s; {len(during)} reads during -> {len(during)}x503 "
          f"({fast} answered < 0.5 s, max {max(d for _, d in during):.2f}s); /readyz "
          f"{ready_s:.2f}s naming database; 5xx other than 503: 0; key answered 201 "
          f"{recovered:.1f}s after thaw (lease {LEASE:.0f}s)")
    await client.post(f"/api/v1/appointments/{answer.json()['id']}/cancel", headers=auth)


async def test_database_killed_mid_commit_every_key_gets_one_answer(
    served: Served, client: httpx.AsyncClient
) -> None:
    auths = [await _login(client, code) for code in RESIDENTS]
    slots = await _slots(client, auths[0], 2)
    jobs = [(auth, slot, uuid.uuid4().hex) for auth in auths for slot in slots]

    async def shoot(auth: dict[str, str], slot: int, key: str) -> tuple[str, int, Any]:
        try:
            r = await _book(client, auth, slot, key)
            return key, r.status_code, r.json()
        except httpx.HTTPError as exc:
            return key, 0, str(exc)

    flight = [asyncio.create_task(shoot(*j)) for j in jobs]
    # Kill the moment the first answer is out: one acknowledged, the rest mid-request.
    await asyncio.wait(flight, return_when=asyncio.FIRST_COMPLETED)
    served.mariadb.kill()
    first = await asyncio.gather(*flight)
    killed_at = time.monotonic()
    served.mariadb.start()
    statuses = [status for _, status, _ in first]
    assert 500 not in statuses, first
    acknowledged = {key: body["id"] for key, status, body in first if status == 201}
    answers = {}
    for auth, slot, key in jobs:
        r = await _retry_until_answered(client, auth, slot, key, within=LEASE + 30)
        assert r.status_code == 201, r.text
        answers[key] = r.json()["id"]
    recovered = time.monotonic() - killed_at
    for key, appt_id in acknowledged.items():
        assert answers[key] == appt_id  # the original answer, not a second booking
    ids = ",".join(str(i) for i in answers.values())
    assert served.sql(f"SELECT COUNT(*) FROM appointments WHERE id IN ({ids}) "
                      "AND holding = 1") == [(len(jobs),)]  # acknowledged = stored
    _invariants(served)
    print(f"\nFIGURE mariadb SIGKILLed with {len(jobs)} keyed bookings in flight: "
          f"{statuses.count(201)} acknowledged before, {statuses.count(503)}x503, "
          f"{statuses.count(500)}x500; every key answered 201 once, {recovered:.1f}s after the "
          f"kill (restart included); counters = rows")
    for auth in auths:
        mine = (await client.get("/api/v1/appointments", headers=auth,
                                 params={"status": "booked"})).json()["appointments"]
        for a in mine:
            await client.post(f"/api/v1/appointments/{a['id']}/cancel", headers=auth)


async def test_killed_worker_is_replaced_and_readiness_says_so(
    served: Served, client: httpx.AsyncClient
) -> None:
    _wait_ready(served, timeout=60)
    before = served.workers()
    assert len(before) == 2, (before, served.proc.poll())
    os.kill(before[0], signal.SIGKILL)
    killed = time.monotonic()
    saw_missing = False
    statuses: list[int] = []
    while time.monotonic() - killed < 60:
        r = await client.get("/readyz")
        statuses.append(r.status_code)
        if r.status_code == 503 and r.json()["down"] == ["workers"]:
            saw_missing = True
        if r.status_code == 200 and saw_missing:
            break
        await asyncio.sleep(0.1)
    replaced_in = time.monotonic() - killed
    after = served.workers()
    assert saw_missing
    assert len(after) == 2 and before[0] not in after
    auth = await _login(client, "wang")
    assert (await client.get("/api/v1/appointments", headers=auth)).status_code == 200
    print(f"\nFIGURE worker SIGKILLed: {len(statuses)} probes while it was replaced, "
          f"{statuses.count(503)} said 'workers' down, none hung; ready again in "
          f"{replaced_in:.1f}s")
