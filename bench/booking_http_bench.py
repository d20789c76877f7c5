"""Booking over HTTP: the real ``POST /api/v1/appointments`` against a bare Sanic handler doing
only the minimal correct work (conditional UPDATE + INSERT + COMMIT through aiomysql), same
requests, same concurrency, driven by ``wrk`` (see bench/wrk/__init__.py for how to get it).

    .venv/bin/python -m bench.booking_http_bench [--rounds 3] [--scenario all|free|hot|school]

Scenarios (each round starts from empty slots and residents without bookings):
- ``free``: 200 residents booking 200 free places (10 slots × 20) with 50 in flight;
- ``hot``: 200 residents on one slot of 6 places, 50 in flight;
- ``school`` (入学 registration): 5,000 residents, 50 slots × 20, the first minute's rush,
  both servers on two workers, 100 in flight.
Needs MariaDB (``XQ_BENCH_MYSQL_URL``, default root@127.0.0.1:3306; a throwaway database is
created and dropped) and Redis (``XQ_BENCH_REDIS_URL``, default redis://127.0.0.1:6415/0 — use
a Redis of your own: the bench flushes that db). Bare and real alternate round by round so a
loaded machine hits both alike; it prints bookings/s, the ratio, p50/p99 and the server CPU per
request, and checks every slot's counter against its rows. Figures only, no assertions about
speed; docs/appointments.md ("Speed") records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from bench.scan_bench import ROOT, Server
from bench.wrk import WrkRun, group_cpu, run_list

MYSQL_URL = os.environ.get("XQ_BENCH_MYSQL_URL", "mysql://root:@127.0.0.1:3306")
REDIS_URL = os.environ.get("XQ_BENCH_REDIS_URL", "redis://127.0.0.1:6415/0")
HALL = "H-QY-000"


# --- the bare server (imported by the subprocess through the sanic CLI) ---------------------


def _pool_size() -> int:
    """Connections per worker (``XQ_BENCH_POOL``, set per scenario in ``main``)."""
    return int(os.environ.get("XQ_BENCH_POOL", "50"))


def bare_app() -> Any:
    """The floor: one transaction with a conditional UPDATE on the slot, an INSERT of the
    booking (unique per slot and person) and COMMIT, through an aiomysql pool of 50."""
    app: Sanic = Sanic("booking_bench_bare")  # type: ignore[type-arg]
    app.config.ACCESS_LOG = False

    @app.before_server_start
    async def open_pool(app: Any) -> None:
        url = os.environ["XQ_BENCH_BARE_DB"]
        app.ctx.pool = await aiomysql.create_pool(host="127.0.0.1", port=3306, user="root",
                                                  password="", db=url, maxsize=_pool_size(),
                                                  autocommit=False)

    @app.post("/bare")
    async def bare(request: Request) -> HTTPResponse:
        body = request.json
        async with request.app.ctx.pool.acquire() as conn, conn.cursor() as cur:
            taken = await cur.execute(
                "UPDATE appointment_slots SET general_booked = general_booked + 1 "
                "WHERE id = %s AND general_booked < general_capacity", (body["slot_id"],))
            if taken:
                await cur.execute("INSERT INTO bench_bare_bookings (slot_id, person_id) "
                                  "VALUES (%s, %s)", (body["slot_id"], body["person_id"]))
            await conn.commit()
        if not taken:
            return json_response({"error": {"code": "slot_full"}}, status=409)
        return json_response({"slot_id": body["slot_id"]}, status=201)

    @app.get("/ping")
    async def ping(_request: Request) -> HTTPResponse:
        return json_response({"ok": True})

    return app


_GUARDED_TABLES = (
    "CREATE TABLE bench_guarded_bookings (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
    "slot_id BIGINT NOT NULL, person_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL, "
    "holding BOOL NULL, ends_at DATETIME(6) NOT NULL, check_in_token VARCHAR(32) NOT NULL, "
    "created_at DATETIME(6) NOT NULL, UNIQUE KEY uniq (slot_id, person_id, holding), "
    "KEY person_status (person_id, status));"
    "CREATE TABLE bench_guarded_outbox (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
    "kind VARCHAR(64) NOT NULL, payload JSON NOT NULL, dedup_key VARCHAR(191) NOT NULL UNIQUE, "
    "status VARCHAR(16) NOT NULL, available_at DATETIME(6) NOT NULL)")


def guarded_app() -> Any:
    """The floor *with this service's guarantees*, still without any framework: the same
    eight statements the real booking sends (slot read; then the account's person read and
    locked, the person's bookings counted, the conditional UPDATE, the booking INSERT, the
    notice's outbox INSERT, COMMIT), hand-written on a bare aiomysql pool. What separates
    it from ``bare`` is what the guarantees cost on this stack; what separates ``real``
    from it is the framework, the ORM and the service's Python."""
    app: Sanic = Sanic("booking_bench_guarded")  # type: ignore[type-arg]
    app.config.ACCESS_LOG = False

    @app.before_server_start
    async def open_pool(app: Any) -> None:
        app.ctx.pool = await aiomysql.create_pool(host="127.0.0.1", port=3306, user="root",
                                                  password="", db=os.environ["XQ_BENCH_BARE_DB"],
                                                  maxsize=_pool_size(), autocommit=False)

    @app.post("/guarded")
    async def guarded(request: Request) -> HTTPResponse:
        body = request.json
        sid, uid = body["slot_id"], body["user_id"]
        now = datetime.now()  # the bench's own table: naive, like its columns
        async with request.app.ctx.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT id, starts_at, ends_at, general_booked, general_capacity "
                              "FROM appointment_slots WHERE id = %s", (sid,))
            slot = await cur.fetchone()
            await conn.commit()  # the read before the transaction, as the real one
            if slot[3] >= slot[4]:
                return json_response({"error": {"code": "slot_full"}}, status=409)
            await cur.execute("SELECT p.id, p.birth_date, p.tags FROM users u JOIN persons p "
                              "ON p.id = u.person_id WHERE u.id = %s FOR UPDATE", (uid,))
            person = await cur.fetchone()
            await cur.execute(
                "SELECT COALESCE(SUM(CASE WHEN status = 'booked' AND ends_at > %s THEN 1 "
                "ELSE 0 END), 0), COALESCE(SUM(CASE WHEN slot_id = %s AND holding THEN 1 "
                "ELSE 0 END), 0) FROM bench_guarded_bookings WHERE person_id = %s",
                (now, sid, person[0]))
            active, holds = await cur.fetchone()
            if holds or active >= 3:
                await conn.rollback()
                return json_response({"error": {"code": "booking_limit_reached"}}, status=409)
            taken = await cur.execute(
                "UPDATE appointment_slots SET general_booked = general_booked + 1 "
                "WHERE id = %s AND general_booked < general_capacity", (sid,))
            if not taken:
                await conn.rollback()
                return json_response({"error": {"code": "slot_full"}}, status=409)
            await cur.execute("INSERT INTO bench_guarded_bookings (slot_id, person_id, status, "
                              "holding, ends_at, check_in_token, created_at) "
                              "VALUES (%s, %s, 'booked', TRUE, %s, %s, %s)",
                              (sid, person[0], slot[2], uuid.uuid4().hex[:16], now))
            bid = cur.lastrowid
            await cur.execute("INSERT INTO bench_guarded_outbox (kind, payload, dedup_key, "
                              "status, available_at) VALUES ('appointments.notify', %s, %s, "
                              "'pending', %s)",
                              (json.dumps({"appointment_id": bid, "kind": "booked"}),
                               f"appt:{bid}:booked", now))
            await conn.commit()
        return json_response({"id": bid, "slot_id": sid}, status=201)

    @app.get("/ping")
    async def ping(_request: Request) -> HTTPResponse:
        return json_response({"ok": True})

    return app


def real_app() -> Any:
    from api.app import create_app

    return create_app()


# --- preparation --------------------------------------------------------------------------


def _env(db_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XQ_ENV": "development",
        "XQ_DATABASE_URL": f"{MYSQL_URL.rstrip('/')}/{db_name}?maxsize=50",
        "XQ_REDIS_URL": REDIS_URL,
        "XQ_WECHAT_MODE": "stub",
        "XQ_LOG_REQUESTS": "false",
        # As production runs it (deploy/): the serving process answers requests, a job
        # process of its own delivers what the outbox promised (the 预约成功 notices). Its
        # CPU is measured and printed separately.
        "XQ_RUN_BACKGROUND_JOBS": "false",
        # Each resident books once per round; rounds follow each other within the minute.
        "XQ_APPOINTMENT_BOOK_RATE_LIMIT": str(10**9),
        "XQ_BENCH_BARE_DB": db_name,
        "PYTHONPATH": str(ROOT),
    })
    return env


async def _prepare(env: dict[str, str],
                   residents: int) -> tuple[list[str], list[int], list[int]]:
    """Schema, seed, ``residents`` people with accounts and access tokens."""
    os.environ.update(env)
    from tortoise import Tortoise, connections

    import manage
    from models.users import Person, User
    from services import cache, db
    from services.auth import issue_access_token
    from services.identity import _id_check_char
    from services.people import _fill_identity, parse_id_number
    from services.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    r = cache.connect(REDIS_URL)
    await r.flushdb()
    await r.aclose()
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    await Tortoise.generate_schemas()
    await connections.get("default").execute_script(
        "CREATE TABLE bench_bare_bookings (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "slot_id BIGINT NOT NULL, person_id BIGINT NOT NULL, "
        "UNIQUE KEY uniq_slot_person (slot_id, person_id))")
    await connections.get("default").execute_script(_GUARDED_TABLES)
    await Tortoise.close_connections()
    await manage.seed()
    await db.open_db(settings)
    await cache.open_cache(settings.redis_url)
    try:
        last = await Person.all().order_by("-id").first()
        people = []
        for i in range(residents):
            first17 = f"621002199001{(i // 1000) % 28 + 1:02d}{i % 1000:03d}"
            p = Person(tags=[])
            _fill_identity(p, name="压测居民", idn=parse_id_number(first17 +
                                                                 _id_check_char(first17)))
            people.append(p)
        await Person.bulk_create(people, batch_size=500)
        ids = await Person.filter(id__gt=last.id if last else 0).order_by("id").values_list(
            "id", flat=True)
        await User.bulk_create([User(openid=f"bench-{uuid.uuid4().hex}", person_id=pid)
                                for pid in ids], batch_size=500)
        users = await User.filter(openid__startswith="bench-").order_by("id")
        tokens = [issue_access_token(u, ["resident"]) for u in users]
        person_ids = [u.person_id for u in users]
        user_ids = [u.id for u in users]
    finally:
        await cache.close_cache()
        await db.close_db()
    return tokens, person_ids, user_ids


async def _new_slots(env: dict[str, str], k: int, capacity: int, day_offset: int) -> list[int]:
    """Fresh empty slots ``day_offset`` days ahead (inside the hall rule's horizon), and no
    bookings left from the previous round."""
    os.environ.update(env)
    from models.appointments import Appointment, Slot
    from models.catalogue import Hall
    from services import clock, db
    from services.settings import get_settings

    await db.open_db(get_settings())
    try:
        from tortoise import connections

        await Appointment.all().delete()
        await connections.get("default").execute_script(
            "DELETE FROM bench_bare_bookings; DELETE FROM bench_guarded_bookings; "
            "DELETE FROM bench_guarded_outbox")
        hall = await Hall.get(code=HALL)
        day = clock.today() + timedelta(days=day_offset)
        start = datetime(day.year, day.month, day.day, 9, 0, tzinfo=clock.SHANGHAI)
        base = await Slot.filter(hall_id=hall.id).count()
        made = [await Slot.create(hall=hall, window_kind="comprehensive",
                                  starts_at=start + timedelta(seconds=base + i),
                                  ends_at=start + timedelta(minutes=30, seconds=base + i),
                                  general_capacity=capacity, green_hold=0) for i in range(k)]
        return [s.id for s in made]
    finally:
        await db.close_db()


async def _check(env: dict[str, str], slot_ids: list[int], table: str) -> int:
    """Each slot's counter equals its rows and is within capacity; returns places taken."""
    os.environ.update(env)
    from tortoise import connections

    from services import db
    from services.settings import get_settings

    await db.open_db(get_settings())
    try:
        conn = connections.get("default")
        where = "AND status <> 'cancelled'" if table != "bench_bare_bookings" else ""
        total = 0
        for sid in slot_ids:
            [slot] = await conn.execute_query_dict(
                "SELECT general_booked, general_capacity FROM appointment_slots WHERE id = %s",
                [sid])
            [rows] = await conn.execute_query_dict(
                f"SELECT COUNT(*) AS n FROM {table} WHERE slot_id = %s {where}", [sid])
            if not slot["general_booked"] == rows["n"] <= slot["general_capacity"]:
                raise SystemExit(f"INCONSISTENT slot {sid}: {slot} rows {rows['n']}")
            total += rows["n"]
        return total
    finally:
        await db.close_db()


class JobProcess:
    """``manage.py jobs`` beside the real server, in a session of its own so its CPU is
    counted apart from the serving process's, at the priority production gives it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        # Niced as deploy/xiaoqing-jobs.service runs it: in a rush the notices wait a little,
        # the bookings don't.
        self.proc = subprocess.Popen(["nice", "-n", "10", sys.executable, "manage.py", "jobs"],
                                     cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def cpu(self) -> float:
        return group_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=70)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()


async def _outbox_drained(env: dict[str, str], within: float = 120) -> float:
    """Wait until the job process has delivered every promised notice; how long that took
    after the round's last answer."""
    os.environ.update(env)
    from models.outbox import OutboxMessage
    from services import db
    from services.settings import get_settings

    await db.open_db(get_settings())
    try:
        start = time.monotonic()
        deadline = start + within
        while await OutboxMessage.filter(status="pending").exists():
            if time.monotonic() > deadline:
                raise SystemExit("the job process left notices undelivered")
            await asyncio.sleep(0.2)
        return time.monotonic() - start
    finally:
        await db.close_db()


def _profile(real: Server, jobs: JobProcess, tmp: Path, name: str) -> list[subprocess.Popen[bytes]]:
    """With ``XQ_BENCH_PROFILE=1``: py-spy samples the serving and the job process for the
    whole scenario (collapsed stacks in the logs folder; ``pip install py-spy``)."""
    if os.environ.get("XQ_BENCH_PROFILE") != "1":
        return []
    return [subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--format", "raw",
                              "-o", str(tmp / f"{what}-{name}.folded"), "--rate", "200"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for what, proc in (("real", real.proc), ("jobs", jobs.proc))]


SCENARIOS = {
    # name: (label, residents, slots, capacity, connections, workers)
    "free": ("200 residents, 200 free places (10×20)", 200, 10, 20, 50, 1),
    "hot": ("200 residents, one slot of 6", 200, 1, 6, 50, 1),
    "school": ("入学: 5,000 residents, 50 slots × 20, two workers", 5000, 50, 20, 100, 2),
}


def _requests(kind: str, people: tuple[list[str], list[int], list[int]], slot_ids: list[int],
              n: int) -> list[tuple[str, str, str]]:
    tokens, person_ids, user_ids = people
    out = []
    for i in range(n):
        sid = slot_ids[i % len(slot_ids)]
        if kind == "bare":
            out.append(("/bare", "", json.dumps({"slot_id": sid, "person_id": person_ids[i]})))
        elif kind == "guarded":
            out.append(("/guarded", "", json.dumps({"slot_id": sid, "user_id": user_ids[i]})))
        else:
            out.append(("/api/v1/appointments", tokens[i],
                        json.dumps({"slot_id": sid, "item_code": "GA-001"})))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["all", *SCENARIOS], default="all")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]

    from services import db as dbs

    if not dbs.server_reachable(MYSQL_URL, 3306):
        raise SystemExit("MariaDB not reachable: this bench measures the real database")
    db_name = f"xq_bench_{uuid.uuid4().hex[:8]}"
    env = _env(db_name)
    tmp = Path(tempfile.mkdtemp(prefix="booking_bench_"))
    asyncio.run(dbs.create_database(MYSQL_URL, db_name))
    try:
        most = max(SCENARIOS[s][1] for s in chosen)
        people = asyncio.run(_prepare(env, most))
        day = 1
        tables = {"bare": "bench_bare_bookings", "guarded": "bench_guarded_bookings",
                  "real": "appointments"}
        for name in chosen:
            label, n, k, cap, conns, workers = SCENARIOS[name]
            # 50 connections a server on one worker; on two, 20 each — three servers of two
            # workers at 25 would already fill MariaDB's default max_connections (151).
            pool = 50 if workers == 1 else 20
            server_env = {**env, "XQ_BENCH_POOL": str(pool),
                          "XQ_DATABASE_URL": env["XQ_DATABASE_URL"].replace(
                              "maxsize=50", f"maxsize={pool}")}
            servers = {kind: Server(f"bench.booking_http_bench:{kind}_app", server_env,
                                    tmp / f"{kind}-{name}.log", workers=workers)
                       for kind in tables}
            jobs = JobProcess({**env, "XQ_DATABASE_URL": env["XQ_DATABASE_URL"].replace(
                "maxsize=50", "maxsize=5")}, tmp / f"jobs-{name}.log")
            results: dict[str, list[WrkRun]] = {kind: [] for kind in tables}
            jobs_cpu = 0.0
            lags: list[float] = []
            profilers: list[subprocess.Popen[bytes]] = []
            try:
                for kind, server in servers.items():
                    server.wait_ready("/healthz" if kind == "real" else "/ping")
                profilers = _profile(servers["real"], jobs, tmp, name)
                for rnd in range(args.rounds + 1):  # round 0 warms them up, not counted
                    # Each round in another order, so a loaded machine hits all alike.
                    order = list(tables)[rnd % 3:] + list(tables)[:rnd % 3]
                    for kind in order:
                        server = servers[kind]
                        day = day % 6 + 1  # stay inside the rule's booking horizon
                        slot_ids = asyncio.run(_new_slots(env, k, cap, day))
                        cpu0 = jobs.cpu()
                        run = run_list(server.port, _requests(kind, people, slot_ids, n),
                                       connections=conns, pgid=server.proc.pid)
                        if kind == "real":
                            lag = asyncio.run(_outbox_drained(env))
                            if rnd:
                                jobs_cpu += jobs.cpu() - cpu0
                                lags.append(lag)
                        taken = asyncio.run(_check(env, slot_ids, tables[kind]))
                        if taken != min(n, k * cap) or run.statuses.get(201, 0) != taken:
                            raise SystemExit(f"WRONG {kind}: {taken} taken, {run.statuses}")
                        if rnd:
                            results[kind].append(run)
            finally:
                for p in profilers:
                    p.send_signal(signal.SIGINT)
                    p.wait(timeout=60)
                for server in servers.values():
                    server.stop()
                jobs.stop()
            _report(label, name, conns, workers, results, jobs_cpu, lags)
    finally:
        asyncio.run(dbs.drop_database(MYSQL_URL, db_name))
    print(f"  logs: {tmp}")
    return 0


def _report(label: str, name: str, conns: int, workers: int,
            results: dict[str, list[WrkRun]], jobs_cpu: float, lags: list[float]) -> None:
    print(f"{label} — {conns} in flight, {workers} worker(s), {len(results['real'])} rounds")
    rps, cpu = {}, {}
    for kind, runs in results.items():
        rps[kind] = statistics.median(r.rps for r in runs)
        booked = statistics.median(r.statuses.get(201, 0) / r.seconds for r in runs)
        cpu[kind] = sum(r.server_cpu for r in runs) / sum(r.requests for r in runs) * 1e6
        statuses = {s: n for s, n in sorted(runs[-1].statuses.items())}
        print(f"  {kind:7s} {rps[kind]:7.0f} req/s  {booked:6.0f} bookings/s  "
              f"p50 {statistics.median(r.p50_ms for r in runs):6.1f} ms  "
              f"p99 {statistics.median(r.p99_ms for r in runs):6.1f} ms  "
              f"server CPU {cpu[kind]:6.0f} µs/request  statuses {statuses}")
    booked = sum(r.statuses.get(201, 0) for r in results["real"])
    print(f"  job process (outbox deliveries, off the serving loop): "
          f"{jobs_cpu / max(1, booked) * 1e6:6.0f} µs CPU per booking; every notice out "
          f"{max(lags, default=0):.1f} s after the round's last answer at most")
    for a, b in (("real", "bare"), ("guarded", "bare"), ("real", "guarded")):
        print(f"  ratio {a}/{b}: {rps[a] / rps[b]:.2f} req/s, "
              f"{cpu[b] / cpu[a]:.2f} by server CPU per request  [{name}]")


if __name__ == "__main__":
    sys.exit(main())
