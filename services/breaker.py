"""A circuit breaker per outside dependency (the database, Redis), and the errors an outage is.

Why: during an outage every request used to wait its own full timeout on a dependency that was
already known to be down, so a worker's event loop filled with waiters and even requests that
never touch the dependency slowed to a crawl. After ``failures`` consecutive failures the circuit
opens: callers fail at once (a 503 with ``Retry-After``) for ``open_seconds``; then one trial
call is let through (half-open) and its outcome closes or reopens the circuit.

The breakers are per process: each worker learns of an outage from its own first few failures,
which costs at most ``failures`` timeouts per worker per outage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.exceptions import ConnectionError as RedisConnectionError
from tortoise.exceptions import DBConnectionError

from services.settings import get_settings


class RedisUnavailable(RedisConnectionError):
    """Redis is down, frozen or refusing. A ``redis`` ConnectionError, so code that already
    tolerates a missing Redis (``except RedisError``) keeps doing so."""


class DatabaseUnavailable(DBConnectionError):
    """The database is down, frozen, or its pool had no connection within the bound."""


@dataclass
class Breaker:
    name: str
    failures: int = 3
    open_seconds: float = 5.0
    _consecutive: int = 0
    _open_until: float = 0.0
    _trial_in_flight: bool = False
    _trial_started: float = 0.0
    opened_count: int = field(default=0)

    def allow(self) -> bool:
        """Whether a call may go to the dependency now."""
        if self._consecutive < self.failures:
            return True
        now = time.monotonic()
        if now < self._open_until:
            return False
        if self._trial_in_flight and now - self._trial_started < self.open_seconds:
            return False
        # Half-open: this caller is the trial. A trial that never reports back (cancelled by
        # its request's deadline) is replaced by the next caller after open_seconds.
        self._trial_in_flight = True
        self._trial_started = now
        return True

    def check(self) -> None:
        if not self.allow():
            raise self.unavailable()

    def success(self) -> None:
        self._consecutive = 0
        self._trial_in_flight = False

    def failure(self) -> None:
        self._trial_in_flight = False
        self._consecutive += 1
        if self._consecutive >= self.failures:
            if time.monotonic() >= self._open_until:
                self.opened_count += 1
            self._open_until = time.monotonic() + self.open_seconds

    @property
    def is_open(self) -> bool:
        return self._consecutive >= self.failures and time.monotonic() < self._open_until

    def retry_after(self) -> int:
        return max(1, round(self._open_until - time.monotonic()) if self.is_open
                   else round(self.open_seconds))

    def unavailable(self) -> Exception:
        message = f"{self.name} unavailable (circuit open)"
        return RedisUnavailable(message) if self.name == "redis" else DatabaseUnavailable(message)

    def reset(self) -> None:
        self._consecutive = 0
        self._open_until = 0.0
        self._trial_in_flight = False


_BREAKERS: dict[str, Breaker] = {}


def by_name(name: str) -> Breaker:
    """The process's breaker for ``database`` or ``redis``, made on first use: reading the
    settings at import would make every import of this module a start-up check (a refused
    start must come from the app factory, with its clean message)."""
    b = _BREAKERS.get(name)
    if b is None:
        s = get_settings()
        b = _BREAKERS[name] = Breaker(name, failures=s.breaker_failures,
                                      open_seconds=s.breaker_open_seconds)
    return b


def __getattr__(name: str) -> Breaker:
    # `breaker.database` / `breaker.redis`, as callers write them.
    if name in ("database", "redis"):
        return by_name(name)
    raise AttributeError(name)
