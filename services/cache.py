"""The one door to Redis.

``memory://`` gives fakeredis (with Lua, for the scripts the job queue and rate limiter use)
so a laptop needs no server; it lives in this process only, which is why several workers need
a real ``redis://`` server. Everything else in the code takes the client from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services import breaker
from services.settings import get_settings

_client: Redis | None = None

# What an outage looks like from the client: refused/reset connections and reads that time out.
_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)


async def _guarded(call: Callable[[], Awaitable[Any]]) -> Any:
    b = breaker.redis
    b.check()
    try:
        result = await call()
    except breaker.RedisUnavailable:
        raise
    except _OUTAGE as exc:
        b.failure()
        raise breaker.RedisUnavailable(str(exc) or type(exc).__name__) from exc
    b.success()
    return result


class GuardedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        run = super().execute
        result: list[Any] = await _guarded(lambda: run(raise_on_error))
        return result


class GuardedRedis(Redis):
    """Every command and pipeline passes the Redis circuit breaker: while Redis is known to be
    down, callers get ``RedisUnavailable`` at once instead of each waiting out a timeout."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        run = super().execute_command
        return await _guarded(lambda: run(*args, **options))  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        return GuardedPipeline(self.connection_pool, self.response_callbacks, transaction,
                               shard_hint)


def connect(url: str) -> Redis:
    if url.startswith("memory://"):
        import fakeredis

        server = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    timeout = get_settings().redis_timeout_seconds
    # Bounded waits: a frozen Redis costs a command at most ``timeout``. A ConnectionError
    # (the server closed this pooled connection, e.g. it restarted) is retried once on a fresh
    # connection: the command never reached a live server, so even a write is safe to resend.
    # Timeouts are not retried: the server may have run the command.
    return GuardedRedis.from_url(
        url, decode_responses=True, health_check_interval=30,
        socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_timeout=False,
    )


async def open_cache(url: str) -> Redis:
    global _client
    _client = connect(url)
    return _client


def use(client: Redis) -> None:
    """Install an already-open client (tests share one across the app and services)."""
    global _client
    _client = client


def redis() -> Redis:
    if _client is None:
        raise RuntimeError("Redis is not open: open_cache() runs at worker start")
    return _client


async def close_cache() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


async def ping() -> bool:
    try:
        return bool(await redis().ping())
    except Exception:
        return False


def reset_breaker() -> None:
    """Tests: forget an outage a previous test caused."""
    breaker.redis.reset()
