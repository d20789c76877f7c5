"""The one place for after-commit effects: a transactional outbox.

Anything that must happen because a transaction committed (a subscribe message, a policy push,
a reminder) is written by ``add`` into ``outbox_messages`` *inside that transaction*: the effect
commits or rolls back with the work, so a crash, a killed worker or an empty Redis after a
restart can delay it but never lose it. Delivery is at-least-once: any worker claims due rows
with a conditional update (a lease), runs the kind's handler, and marks the row delivered; a
worker that dies mid-delivery lets the lease run out and another takes the row. Handlers must
be idempotent, which for messages ``notifications.notify`` is (exactly once per dedup key).

Redis is only the fast path: a request that added rows publishes a wake-up after it finished
(``wake_after_request``), and every worker also polls the table every
``outbox_poll_seconds``, so with Redis gone the effects still go out, a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models.outbox import OutboxMessage
from services import cache, clock

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]

WAKE_CHANNEL = "outbox:wake"
LEASE_SECONDS = 60
MAX_ATTEMPTS = 8
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

_handlers: dict[str, Handler] = {}
# Set per request by the endpoint decorator: whether this request added anything, so it
# publishes one wake-up after its transactions are done.
_added: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("outbox_added",
                                                                           default=None)
_local_wake = asyncio.Event()


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn

    return register


async def add(kind: str, payload: dict[str, Any], dedup_key: str, *,
              using_db: BaseDBAsyncClient | None = None, delay_seconds: float = 0) -> bool:
    """Record ``kind(payload)`` to run after the current transaction commits. Pass the
    transaction's connection as ``using_db`` (docs/conventions.md: one way of passing it).
    Returns False when ``dedup_key`` was already recorded (the effect is already promised)."""
    if kind not in _handlers:
        raise LookupError(f"no outbox handler for {kind!r}")
    key = dedup_key[:191]
    # No look first: the unique key answers "already promised" (a duplicate INSERT fails
    # alone, on MySQL and SQLite alike, leaving the transaction usable), and a booking in
    # the rush saves a statement.
    try:
        await OutboxMessage.create(
            kind=kind, payload=payload, dedup_key=key, status=PENDING,
            available_at=clock.now() + timedelta(seconds=delay_seconds), using_db=using_db)
    except IntegrityError:
        return False  # recorded concurrently: promised once
    pending = _added.get()
    if pending is not None:
        pending.append(kind)
    return True


def begin_request() -> contextvars.Token[list[str] | None]:
    return _added.set([])


async def end_request(token: contextvars.Token[list[str] | None]) -> None:
    """After the handler returned (its transactions are committed): wake the dispatchers if it
    promised anything. Best effort: without Redis the poll finds the rows anyway."""
    pending = _added.get()
    _added.reset(token)
    if pending:
        await wake()


async def wake() -> None:
    _local_wake.set()
    with contextlib.suppress(Exception):
        await cache.redis().publish(WAKE_CHANNEL, "1")


async def dispatch_due(*, limit: int = 50) -> int:
    """Deliver due messages (this worker's share). Returns how many it delivered."""
    now = clock.now()
    ids = await OutboxMessage.filter(status=PENDING, available_at__lte=now).order_by(
        "id").limit(limit).values_list("id", flat=True)
    delivered = 0
    for mid in ids:
        # The claim: whoever moves available_at forward owns the row for the lease.
        claimed = await OutboxMessage.filter(
            id=mid, status=PENDING, available_at__lte=now
        ).update(available_at=clock.now() + timedelta(seconds=LEASE_SECONDS),
                 attempts=F("attempts") + 1)
        if not claimed:
            continue
        msg = await OutboxMessage.get(id=mid)
        fn = _handlers.get(msg.kind)
        try:
            if fn is None:
                raise LookupError(f"no outbox handler for {msg.kind!r}")
            await fn(msg.payload)
        except Exception as exc:
            dead = msg.attempts >= MAX_ATTEMPTS
            log.warning("outbox delivery failed", exc_info=True, extra={
                "outbox_id": mid, "kind": msg.kind, "attempts": msg.attempts, "dead": dead})
            await OutboxMessage.filter(id=mid, status=PENDING).update(
                status=DEAD if dead else PENDING, last_error=f"{type(exc).__name__}: {exc}"[:300],
                available_at=clock.now() + timedelta(seconds=min(2 ** msg.attempts, 600)))
            continue
        await OutboxMessage.filter(id=mid).update(status=DELIVERED, delivered_at=clock.now())
        delivered += 1
    return delivered


async def wait_for_wake(seconds: float) -> None:
    """Sleep until a wake-up (from this process or, via Redis, another) or ``seconds``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_local_wake.wait(), seconds)
    _local_wake.clear()


async def listen(stop: asyncio.Event) -> None:
    """Turn Redis wake-ups from other workers into this worker's local wake. Reconnects after
    a Redis outage; while Redis is away the poll alone delivers."""
    while not stop.is_set():
        pubsub = None
        try:
            pubsub = cache.redis().pubsub()
            await pubsub.subscribe(WAKE_CHANNEL)
            while not stop.is_set():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    _local_wake.set()
        except Exception:
            await asyncio.sleep(1.0)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
