"""Scan bench: the real ``POST /api/v1/codes/scan`` against a bare Sanic handler doing one Redis
GET, side by side, same machine, same load, loopback only.

Run from the repo root::

    .venv/bin/python -m bench.scan_bench                 # person code scanned by staff
    .venv/bin/python -m bench.scan_bench --scenario doorplate   # resident scans a door plate

What it does: prepares a throwaway SQLite database (schemas + ``manage.py seed``) and Redis db 12,
mints a staff access token and codes, starts both servers as subprocesses (``sanic ...
--single-process``: one event loop each, so the comparison is loop against loop), then drives
them alternately with the same number of keep-alive connections for the same time, in rounds
(with ``wrk`` by default — see bench/wrk/__init__.py for how to get it; ``--client python`` uses
the asyncio client below), against a Redis db of its own (``XQ_BENCH_REDIS_URL``; it is flushed),
and prints throughput, the ratio, p50/p99 latency, and the CPU the server process and Redis spent
per request (the load generator shares the machine, so CPU per request is the steadier figure).
The real app runs as production does (docs/foundation.md "Background work"): the serving process
with ``XQ_RUN_BACKGROUND_JOBS=false`` and a job process (``manage.py jobs``) beside it, which
flushes the scan-log buffer and replays the journals during the measurement; its CPU per scan is
printed on its own line. ``--jobs in-server`` runs the jobs inside the serving process instead
(the embedded default's shape, and how this bench measured before the job process).
Bounded in requests and time; stops the servers it started. Prints figures only — no speed
assertions (machines differ). docs/codes.md records the figures and what costs what.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from bench.wrk import group_cpu, run_repeat, wrk_binary

ROOT = Path(__file__).resolve().parents[1]
# A Redis db of your own (the bench flushes it): two benches on one db void each other's codes.
REDIS_URL = os.environ.get("XQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
BARE_KEY = "bench:bare"


# --- the bare server (imported by the subprocess through the sanic CLI) ---------------------


def bare_app() -> Any:
    """A Sanic app with one handler: one Redis GET, a JSON answer. The floor for any scan."""
    app: Sanic = Sanic("scan_bench_bare")  # type: ignore[type-arg]
    app.config.ACCESS_LOG = False

    lane = os.environ.get("XQ_BENCH_BARE_LANE") == "1"

    @app.before_server_start
    async def open_redis(app: Any) -> None:
        url = os.environ.get("XQ_REDIS_URL", REDIS_URL)
        if lane:  # the app's own client, for its hot lane (services/redislane.py)
            from services import cache

            app.ctx.redis = cache.connect(url)
        else:
            app.ctx.redis = Redis.from_url(url, decode_responses=True)

    @app.post("/bare")
    async def bare(request: Request) -> HTTPResponse:
        if lane:
            value = await request.app.ctx.redis.hot("GET", BARE_KEY)
        else:
            value = await request.app.ctx.redis.get(BARE_KEY)
        return json_response({"value": value})

    @app.get("/ping")
    async def ping(_request: Request) -> HTTPResponse:
        return json_response({"ok": True})

    return app


def real_app() -> Any:
    """The real app, exactly as ``sanic api.app:create_app --factory`` builds it."""
    from api.app import create_app

    return create_app()


# --- preparation --------------------------------------------------------------------------


@dataclass
class Prepared:
    env: dict[str, str]
    token: str
    bodies: dict[str, bytes]


def _bench_env(db_url: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XQ_ENV": "development",
        "XQ_DATABASE_URL": db_url,
        "XQ_REDIS_URL": REDIS_URL,
        "XQ_WECHAT_MODE": "stub",
        "XQ_LOG_REQUESTS": "false",
        "XQ_RUN_BACKGROUND_JOBS": "true",  # the job process; the server's is set per mode
        "XQ_SCAN_JOURNAL_DIR": str(tmp / "scanlog"),  # its own journals, replayed by its jobs
        # Measured path includes the rate-limit counter; the limit itself must not trip.
        "XQ_SCAN_RATE_LIMIT": str(10**9),
        # A person code lives a minute; the bench outlives that, so it gets a longer one.
        "XQ_PERSON_CODE_TTL_SECONDS": "3600",
        "PYTHONPATH": str(ROOT),
    })
    return env


async def _prepare_data(env: dict[str, str]) -> tuple[str, dict[str, bytes]]:
    os.environ.update(env)
    from tortoise import Tortoise

    import manage
    from miniprogram_stub.platform import FakeWeChatPlatform
    from models.users import User
    from services import cache, codes, db
    from services.auth import Principal, issue_access_token, roles_of
    from services.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    r = cache.connect(REDIS_URL)
    await r.flushdb()
    await r.set(BARE_KEY, json.dumps({"kind": "person", "pid": 1}))
    await r.aclose()
    db._ensure_sqlite_folder(settings.database_url)
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    await Tortoise.generate_schemas(safe=True)  # a reused MySQL database keeps its tables
    await Tortoise.close_connections()
    await manage.seed()

    await db.open_db(settings)
    await cache.open_cache(settings.redis_url)
    try:
        platform = FakeWeChatPlatform(appid=settings.wechat_appid)
        staff = await User.get(openid=platform.openid_for("demo-staff"))
        zhang = await User.get(openid=platform.openid_for("zhang"))
        resident = await User.get(openid=platform.openid_for("wang"))
        staff_token = issue_access_token(staff, await roles_of(staff))
        resident_token = issue_access_token(resident, await roles_of(resident))
        person = await codes.issue_person_code(user_id=zhang.id)
        actor = Principal(user_id=staff.id, roles=frozenset(await roles_of(staff)))
        [(_, plate, _)] = await codes.issue_doorplate_codes(actor=actor,
                                                            plate_codes=["D-XF-0001"])
    finally:
        await cache.close_cache()
        await db.close_db()
    bodies = {
        "person": json.dumps({"content": person.content}).encode(),
        "doorplate": json.dumps({"content": plate.content}).encode(),
    }
    tokens = {"person": staff_token, "doorplate": resident_token}
    return json.dumps(tokens), bodies


# --- servers ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, target: str, env: dict[str, str], log: Path, workers: int = 1,
                 command: list[str] | None = None) -> None:
        self.port = _free_port()
        self.log = log.open("w")
        procs = ["--single-process"] if workers == 1 else ["--workers", str(workers)]
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "sanic", target, "--factory", *procs,
                        "--host", "127.0.0.1", "--port", str(self.port), "--no-access-logs",
                        "--no-motd"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early, see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready, see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # our own session: only what we started
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()


# --- load ---------------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float = 0.0  # seconds of CPU the server process used during the round
    redis_cpu: float = 0.0  # and the Redis server
    jobs_cpu: float = 0.0  # and the job process (manage.py jobs), when there is one

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    p50_p99: tuple[float, float] | None = None  # from wrk, which keeps no per-request list

    def pct(self, q: float) -> float:
        if self.p50_p99 is not None and q in (0.50, 0.99):
            return self.p50_p99[0 if q == 0.50 else 1]
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _connection(port: int, request: bytes, stop_at: float, max_requests: int,
                      counter: list[int], out: Result) -> None:
    """One keep-alive connection sending requests back to back (a minimal HTTP/1.1 client:
    the stock clients cost more CPU per request than the server under test)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at and counter[0] < max_requests:
            counter[0] += 1
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            out.latencies.append(time.perf_counter() - t0)
            out.requests += 1
            if not head.startswith(b"HTTP/1.1 200"):
                out.errors += 1
                if out.errors == 1:
                    print("  first error:", head.split(b"\r\n")[0].decode(), body[:200])
    finally:
        writer.close()


async def _drive(port: int, request: bytes, *, connections: int, seconds: float,
                 max_requests: int) -> Result:
    out = Result(0, 0, 0.0, [])
    counter = [0]
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(_connection(port, request, stop_at, max_requests, counter, out)
                           for _ in range(connections)))
    out.seconds = time.perf_counter() - start
    return out


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its threads, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _redis_cpu(r: Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measured(server: Server, request: bytes, r: Redis, **kw: Any) -> Result:
    """One round, with what it cost the server and Redis in CPU: on a small machine the load
    generator shares the cores, so CPU per request says more than requests per second."""
    cpu0, rcpu0 = _process_cpu(server.proc.pid), await _redis_cpu(r)
    out = await _drive(server.port, request, **kw)
    out.server_cpu = _process_cpu(server.proc.pid) - cpu0
    out.redis_cpu = await _redis_cpu(r) - rcpu0
    return out


def _request(path: str, body: bytes, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n").encode() + body


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["person", "doorplate"], default="person")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measured round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=200_000, help="per round, a bound")
    ap.add_argument("--database-url", default="", help="default: a temp SQLite file")
    ap.add_argument("--client", choices=["wrk", "python"], default="wrk",
                    help="load generator: wrk (default; see bench/wrk) or the asyncio client")
    ap.add_argument("--bare", choices=["redis-py", "lane"], default="redis-py",
                    help="the bare handler's GET: redis-py's client (the reference) or the "
                         "app's pipelined hot lane (what the scan's script call rides on)")
    ap.add_argument("--jobs", choices=["separate", "in-server"], default="separate",
                    help="background jobs in a job process (production; default) or inside "
                         "the serving process")
    args = ap.parse_args(argv)
    if args.client == "wrk":
        wrk_binary()  # fail before preparing anything if it is missing

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    tmp = Path(tempfile.mkdtemp(prefix="scan_bench_"))
    db_url = args.database_url or f"sqlite://{tmp / 'bench.sqlite3'}"
    env = _bench_env(db_url, tmp)
    tokens_json, bodies = asyncio.run(_prepare_data(env))
    token = json.loads(tokens_json)[args.scenario]
    body = bodies[args.scenario]

    separate = args.jobs == "separate"
    serving_env = {**env, "XQ_RUN_BACKGROUND_JOBS": "false" if separate else "true"}
    bare = Server("bench.scan_bench:bare_app",
                  {**env, "XQ_BENCH_BARE_LANE": "1" if args.bare == "lane" else "0"},
                  tmp / "bare.log")
    real = Server("bench.scan_bench:real_app", serving_env, tmp / "real.log")
    jobs = (Server("", env, tmp / "jobs.log", command=[sys.executable, "manage.py", "jobs"])
            if separate else None)

    def _jobs_cpu() -> float:
        return group_cpu(jobs.proc.pid) if jobs is not None else 0.0

    try:
        bare.wait_ready("/ping")
        real.wait_ready("/healthz")
        if jobs is not None and jobs.proc.poll() is not None:
            raise RuntimeError(f"job process exited, see {jobs.log.name}")
        runs = {"bare": (bare, _request("/bare", body, None)),
                "scan": (real, _request("/api/v1/codes/scan", body, token))}
        results: dict[str, list[Result]] = {"bare": [], "scan": []}

        paths = {"bare": ("/bare", ""), "scan": ("/api/v1/codes/scan", token)}

        async def run_wrk() -> None:
            r = Redis.from_url(REDIS_URL)
            for name, (server, _req) in runs.items():  # warm-up
                run_repeat(server.port, (*paths[name], body.decode()),
                           connections=args.connections, seconds=1.0, pgid=server.proc.pid)
            for i in range(args.rounds):
                order = list(runs) if i % 2 == 0 else list(reversed(runs))
                for name in order:
                    server, _req = runs[name]
                    rcpu0, jcpu0 = await _redis_cpu(r), _jobs_cpu()
                    w = run_repeat(server.port, (*paths[name], body.decode()),
                                   connections=args.connections, seconds=args.seconds,
                                   pgid=server.proc.pid)
                    res = Result(w.requests, sum(w.statuses.values()), w.seconds, [],
                                 server_cpu=w.server_cpu, redis_cpu=await _redis_cpu(r) - rcpu0,
                                 jobs_cpu=_jobs_cpu() - jcpu0)
                    res.p50_p99 = (w.p50_ms, w.p99_ms)
                    results[name].append(res)
            await r.aclose()

        async def run_all() -> None:
            if args.client == "wrk":
                await run_wrk()
                return
            r = Redis.from_url(REDIS_URL)
            for server, req in runs.values():  # warm-up: caches and lazily built paths
                await _drive(server.port, req, connections=args.connections, seconds=1.0,
                             max_requests=args.max_requests)
            for i in range(args.rounds):
                # Alternate so drift (thermal, other tenants) hits both alike.
                order = list(runs) if i % 2 == 0 else list(reversed(runs))
                for name in order:
                    server, req = runs[name]
                    jcpu0 = _jobs_cpu()
                    results[name].append(await _measured(
                        server, req, r, connections=args.connections, seconds=args.seconds,
                        max_requests=args.max_requests))
                    results[name][-1].jobs_cpu = _jobs_cpu() - jcpu0
            await r.aclose()

        asyncio.run(run_all())
        if jobs is not None and jobs.proc.poll() is not None:
            raise RuntimeError(f"job process died during the run, see {jobs.log.name}")
    finally:
        if jobs is not None:
            jobs.stop()
        real.stop()
        bare.stop()

    print(f"scenario={args.scenario} client={args.client} db={db_url.split(':')[0]} "
          f"connections={args.connections} rounds={args.rounds}x{args.seconds:g}s "
          f"cpus={os.cpu_count()} jobs={args.jobs} bare={args.bare}")
    summary = {}
    cpu_per_request: dict[str, float] = {}
    for name, rs in results.items():
        best = max(rs, key=lambda r: r.rps)
        lat = [x for r in rs for x in r.latencies]
        merged = Result(sum(r.requests for r in rs), sum(r.errors for r in rs),
                        sum(r.seconds for r in rs), lat)
        if not lat:  # wrk: the median of the rounds' percentiles
            merged.p50_p99 = (statistics.median(r.pct(0.50) for r in rs),
                              statistics.median(r.pct(0.99) for r in rs))
        summary[name] = statistics.median(r.rps for r in rs)
        cpu_per_request[name] = sum(r.server_cpu for r in rs) / max(1, merged.requests) * 1e6
        rcpu = sum(r.redis_cpu for r in rs) / max(1, merged.requests) * 1e6
        print(f"  {name:5s} median {summary[name]:8.0f} req/s (best {best.rps:8.0f})  "
              f"p50 {merged.pct(0.50):6.2f} ms  p99 {merged.pct(0.99):6.2f} ms  "
              f"requests {merged.requests} errors {merged.errors}")
        jcpu = sum(r.jobs_cpu for r in rs) / max(1, merged.requests) * 1e6
        print(f"        CPU per request: server {cpu_per_request[name]:6.0f} µs, "
              f"redis {rcpu:5.0f} µs" + (f", job process {jcpu:5.0f} µs"
                                         if name == "scan" and separate else ""))
    print(f"  ratio scan/bare = {summary['scan'] / summary['bare']:.2f} "
          f"(server CPU per request, bare/scan: "
          f"{cpu_per_request['bare'] / cpu_per_request['scan']:.2f})")
    print(f"  logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
