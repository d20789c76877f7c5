"""Background work on Redis that survives a worker restart and is safe with many workers.

Two kinds:
- **queued jobs** (``enqueue``): a sorted set scored by run time. A worker claims a due job
  with a Lua script that atomically pushes its score forward by a lease; finishing removes it.
  A worker that dies mid-job simply lets the lease run out and another worker takes the job:
  at-least-once, so handlers must be idempotent (``notifications.notify`` is, by dedup key).
- **periodic sweeps** (``periodic``): each tick is claimed with ``SET NX PX`` so one worker
  runs it per interval. Sweeps read the truth from the database, which is why a Redis restart
  loses nothing that matters: the next sweep finds the work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import pkgutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from tortoise.exceptions import DBConnectionError

from services import cache, outbox
from services.settings import get_settings

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
Sweep = Callable[[], Awaitable[None]]

QUEUE = "jobs:queue"
PAYLOADS = "jobs:payloads"
LEASE_SECONDS = 60
MAX_ATTEMPTS = 5

_handlers: dict[str, Handler] = {}


@dataclass(frozen=True)
class _Periodic:
    name: str
    every_seconds: float
    fn: Sweep


_periodic: dict[str, _Periodic] = {}
# Sweeps every worker runs for itself, without a Redis claim (its own local state, or work
# that must go on while Redis is down). name -> (sweep, interval, next run, monotonic)
_local: dict[str, list[Any]] = {}

# KEYS[1]=queue KEYS[2]=payloads ARGV[1]=now ARGV[2]=lease_until
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #ids == 0 then return nil end
redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
return {ids[1], redis.call('HGET', KEYS[2], ids[1])}
"""


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _handlers[name] = fn
        return fn

    return register


def periodic(name: str, *, every_seconds: float) -> Callable[[Sweep], Sweep]:
    def register(fn: Sweep) -> Sweep:
        _periodic[name] = _Periodic(name, every_seconds, fn)
        return fn

    return register


def local(name: str, *, every_seconds: float) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        _local[name] = [fn, every_seconds, 0.0]
        return fn

    return register


async def run_local_once() -> list[str]:
    ran = []
    now = time.monotonic()
    for name, entry in _local.items():
        fn, every, due = entry
        if now < due:
            continue
        entry[2] = now + every
        await fn()
        ran.append(name)
    return ran


async def enqueue(
    name: str, payload: dict[str, Any], *, delay_seconds: float = 0, key: str | None = None
) -> str:
    """Queue ``name(payload)``. With ``key``, enqueueing the same key again is a no-op while
    the first is pending (a double-clicked "publish" queues one push)."""
    job_id = key or uuid.uuid4().hex
    r = cache.redis()
    body = json.dumps({"name": name, "payload": payload, "attempts": 0}, ensure_ascii=False)
    added = await r.hsetnx(PAYLOADS, job_id, body)
    if added:
        await r.zadd(QUEUE, {job_id: time.time() + delay_seconds}, nx=True)
    return job_id


async def run_due(*, limit: int = 100) -> int:
    """Claim and run due jobs until none is due (or ``limit``). Returns how many ran."""
    r = cache.redis()
    claim = r.register_script(_CLAIM)
    ran = 0
    while ran < limit:
        now = time.time()
        got = await claim(keys=[QUEUE, PAYLOADS], args=[now, now + LEASE_SECONDS])
        if not got:
            break
        job_id, raw = got
        ran += 1
        if raw is None:
            await r.zrem(QUEUE, job_id)
            continue
        job = json.loads(raw)
        fn = _handlers.get(job["name"])
        try:
            if fn is None:
                raise LookupError(f"no handler for job {job['name']!r}")
            await fn(job["payload"])
        except Exception:
            job["attempts"] += 1
            log.exception("job failed", extra={"job": job["name"], "attempts": job["attempts"]})
            if job["attempts"] >= MAX_ATTEMPTS:
                await r.hset("jobs:dead", job_id, json.dumps(job, ensure_ascii=False))
                await _finish(job_id)
            else:
                await r.hset(PAYLOADS, job_id, json.dumps(job, ensure_ascii=False))
                await r.zadd(QUEUE, {job_id: time.time() + 2 ** job["attempts"]})
            continue
        await _finish(job_id)
    return ran


async def _finish(job_id: str) -> None:
    r = cache.redis()
    async with r.pipeline(transaction=True) as pipe:
        pipe.zrem(QUEUE, job_id)
        pipe.hdel(PAYLOADS, job_id)
        await pipe.execute()


async def run_periodic_once(*, force: bool = False) -> list[str]:
    """Run every sweep whose interval this worker wins. ``force`` ignores the claims (tests)."""
    r = cache.redis()
    ran = []
    me = f"{os.getpid()}:{uuid.uuid4().hex[:6]}"
    for p in list(_periodic.values()):
        claimed = force or await r.set(
            f"jobs:tick:{p.name}", me, nx=True, px=int(p.every_seconds * 1000)
        )
        if not claimed:
            continue
        try:
            await p.fn()
            ran.append(p.name)
        except Exception:
            log.exception("periodic job failed", extra={"job": p.name})
    return ran


async def worker_loop(stop: asyncio.Event, *, poll_seconds: float | None = None) -> None:
    """Runs in every Sanic worker; the Redis claims and the outbox's row claims make that safe.

    The outbox goes first and on its own: it needs only the database, so a Redis outage
    (which stops the Redis queue and the sweeps' tick claims) doesn't stop after-commit
    effects. Each step is bounded so a frozen dependency can't stall the loop for good."""
    poll = poll_seconds if poll_seconds is not None else get_settings().outbox_poll_seconds
    listener = asyncio.create_task(outbox.listen(stop))
    try:
        while not stop.is_set():
            for step, name in ((outbox.dispatch_due, "outbox"), (run_local_once, "local"),
                               (run_due, "queue"), (run_periodic_once, "sweeps")):
                try:
                    await asyncio.wait_for(step(), timeout=LEASE_SECONDS)
                except Exception as exc:
                    # A dependency away or a sweep broke: keep the loop alive, the next poll
                    # retries. An outage is one line, not a traceback per second.
                    if isinstance(exc, RedisError | DBConnectionError | TimeoutError):
                        log.warning("job loop step skipped", extra={
                            "step": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
                    else:
                        log.exception("job loop step failed", extra={"step": name})
            if stop.is_set():
                break
            await outbox.wait_for_wake(poll)
    finally:
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener


def load_registrations() -> None:
    """Import every module under ``services`` so each ``@handler``/``@periodic``/``@local`` has
    registered. A Sanic worker imports them all through its blueprints; a job process serves no
    routes and would otherwise know only the jobs of the modules it happened to import."""
    import services

    for module in pkgutil.walk_packages(services.__path__, "services."):
        importlib.import_module(module.name)
