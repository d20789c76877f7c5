"""The one door to Redis.

``memory://`` gives fakeredis (with Lua, for the scripts the job queue and rate limiter use)
so a laptop needs no server; it lives in this process only, which is why several workers need
a real ``redis://`` server. Everything else in the code takes the client from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services import breaker, deadlines
from services.settings import get_settings

_client: Redis | None = None
# Idle connections a hot lane keeps (it opens more while more scans are in flight).
_HOT_IDLE_MAX = 64

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot_idle: list[Connection] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        run = super().execute_command
        return await _guarded(lambda: run(*args, **options))  # type: ignore[no-untyped-call]

    async def hot(self, *args: Any) -> Any:
        """One command on a connection of this client's *hot lane*, for the busiest call (the
        scan's script). redis-py 8's ``execute_command`` spends about as much CPU around a
        command as the command costs — pool lock and health probe, observability hooks,
        a task per send for the write timeout, retry wrappers: ~70 µs for a GET against ~30
        µs here, measured. The lane keeps what matters: the breaker, the read timeout, the
        client's encoding, one retry on a fresh connection after a ConnectionError (a
        connection Redis closed, e.g. on restart; the command never reached a live server),
        and a connection that may hold half a reply (cancelled, timed out) is never reused.
        Its connections are its own, outside the pool; ``aclose`` closes them."""
        b = breaker.redis
        b.check()
        for attempt in (1, 2):
            idle = self._hot_idle
            conn = idle.pop() if idle else self.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                if not conn.is_connected:
                    await conn.connect()
                writer = conn._writer
                assert writer is not None
                writer.write(_pack(args))
                if writer.transport.get_write_buffer_size():
                    # Only a reply-less backlog fills the socket: bounded like the client's.
                    await asyncio.wait_for(writer.drain(), conn.socket_timeout)
                reply = await _hot_read(conn)
            except ResponseError:
                # An error reply (NOSCRIPT, a script's error) was read whole: still clean.
                self._hot_return(conn)
                raise
            except RedisConnectionError as exc:
                await conn.disconnect(nowait=True)
                if attempt == 1:
                    continue
                b.failure()
                raise breaker.RedisUnavailable(str(exc) or type(exc).__name__) from exc
            except _OUTAGE as exc:
                await conn.disconnect(nowait=True)
                b.failure()
                raise breaker.RedisUnavailable(str(exc) or type(exc).__name__) from exc
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
            self._hot_return(conn)
            b.success()
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _hot_return(self, conn: Connection) -> None:
        if len(self._hot_idle) < _HOT_IDLE_MAX:
            self._hot_idle.append(conn)
        else:
            asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        idle, self._hot_idle = self._hot_idle, []
        for conn in idle:
            await conn.disconnect(nowait=True)
        await super().aclose(close_connection_pool)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        return GuardedPipeline(self.connection_pool, self.response_callbacks, transaction,
                               shard_hint)


async def _hot_read(conn: Connection) -> Any:
    """``conn.read_response()`` with its socket timeout armed through ``services.deadlines``
    instead of an ``asyncio.timeout`` per read (fires up to a quarter of a second late)."""
    bound = deadlines.arm(conn.socket_timeout) if conn.socket_timeout else None
    try:
        reply = await conn._read_response_from_parser(disable_decoding=False)
    except asyncio.CancelledError as exc:
        if bound is not None and deadlines.disarm(bound):
            raise RedisTimeoutError("Timeout reading from Redis (hot lane)") from exc
        raise
    except OSError as exc:
        raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
    finally:
        if bound is not None:
            deadlines.disarm(bound)
    if isinstance(reply, ResponseError):
        raise reply
    return reply


def _pack(args: Sequence[Any]) -> bytes:
    """A command in RESP, for the hot lane: text, bytes and numbers are all it sends (UTF-8,
    like the client's encoder). A third of redis-py's ``pack_command``, which checks every
    argument's type a dozen ways and cuts large values into chunks."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if a is None or isinstance(a, bool):
            raise TypeError(f"not a Redis argument: {a!r}")  # as redis-py refuses them
        b = a.encode() if isinstance(a, str) else a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


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
