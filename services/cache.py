"""The one door to Redis.

``memory://`` gives fakeredis (with Lua, for the scripts the job queue and rate limiter use)
so a laptop needs no server; it lives in this process only, which is why several workers need
a real ``redis://`` server. Everything else in the code takes the client from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services import breaker
from services.redislane import Lane
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
    except Exception:
        # Redis answered, with an error reply (NOSCRIPT after a restart, a script's error):
        # it is up. Left unreported, a half-open trial ending so kept the circuit shut for
        # another open period — a restarted Redis refused every script call (the fault test
        # of a Redis restart caught it).
        b.success()
        raise
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        self._lane = Lane(pool.make_connection,
                          timeout=pool.connection_kwargs.get("socket_timeout"))

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        run = super().execute_command
        return await _guarded(lambda: run(*args, **options))  # type: ignore[no-untyped-call]

    async def hot(self, *args: Any) -> Any:
        """One command on this client's *hot lane* (services/redislane.py: one pipelined
        connection, the commands of a loop turn in one write), for the busiest call, the
        scan's script. Behind the breaker like every command; retried once after a
        ConnectionError (a connection Redis closed, e.g. on restart), as the client is."""
        b = breaker.redis
        b.check()
        for attempt in (1, 2):
            try:
                reply = await self._lane.call(*args)
            except ResponseError:
                b.success()  # Redis answered: an error reply (NOSCRIPT, a script's error)
                raise
            except RedisConnectionError as exc:
                if attempt == 1:
                    continue
                b.failure()
                raise breaker.RedisUnavailable(str(exc) or type(exc).__name__) from exc
            except _OUTAGE as exc:
                b.failure()
                raise breaker.RedisUnavailable(str(exc) or type(exc).__name__) from exc
            b.success()
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self._lane.aclose()
        await super().aclose(close_connection_pool)

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


async def run_script(script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """``script(keys=..., args=...)``, on the hot lane when the client has one (a real Redis;
    the in-process stand-in runs it the ordinary way). A Redis that lost its scripts
    (restart, SCRIPT FLUSH) gets it loaded again, as redis-py's own call would."""
    client = redis()
    if not isinstance(client, GuardedRedis):
        return await script(keys=keys, args=args)
    try:
        return await client.hot("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script.script)
        return await client.hot("EVALSHA", script.sha, len(keys), *keys, *args)


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
