"""The hot lane of the Redis client (services/cache.py ``GuardedRedis.hot``, ``run_script``):
the scan's one round trip without redis-py's per-command machinery, keeping what that
machinery is for. Needs a real Redis (the in-process stand-in has no connections)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import NoScriptError

from services import breaker, cache, redislane
from tests.conftest import BACKEND, REDIS_URL

needs_redis = pytest.mark.skipif(BACKEND != "real", reason="needs a real Redis")


@pytest.fixture
async def client() -> AsyncIterator[cache.GuardedRedis]:
    c = cache.connect(REDIS_URL)
    assert isinstance(c, cache.GuardedRedis)
    try:
        yield c
    finally:
        await c.aclose()


@needs_redis
async def test_answers_as_the_client_does_and_reuses_its_connection(
        client: cache.GuardedRedis) -> None:
    await client.set("hot:k", "值")
    assert await client.hot("GET", "hot:k") == "值" == await client.get("hot:k")
    assert await client.hot("GET", "hot:missing") is None
    first = await client.hot("CLIENT", "ID")
    assert await client.hot("CLIENT", "ID") == first  # one connection, back in the lane


@needs_redis
async def test_an_error_reply_leaves_the_connection_usable(client: cache.GuardedRedis) -> None:
    first = await client.hot("CLIENT", "ID")
    with pytest.raises(NoScriptError):
        await client.hot("EVALSHA", "0" * 40, 0)
    assert await client.hot("CLIENT", "ID") == first


@needs_redis
async def test_a_connection_redis_closed_is_replaced_once_transparently(
        client: cache.GuardedRedis) -> None:
    first = await client.hot("CLIENT", "ID")
    await client.execute_command("CLIENT", "KILL", "ID", first)  # as a restart would
    await client.set("hot:k", "v")
    assert await client.hot("GET", "hot:k") == "v"
    assert await client.hot("CLIENT", "ID") != first


@needs_redis
async def test_concurrent_calls_share_a_write_and_each_gets_its_own_reply(
        client: cache.GuardedRedis) -> None:
    await client.mset({f"hot:n{i}": str(i) for i in range(200)})
    replies = await asyncio.gather(*(client.hot("GET", f"hot:n{i}") for i in range(200)))
    assert replies == [str(i) for i in range(200)]
    assert len({await client.hot("CLIENT", "ID") for _ in range(3)}) == 1


@needs_redis
async def test_a_cancelled_calls_reply_is_dropped_not_handed_to_the_next(
        client: cache.GuardedRedis) -> None:
    await client.set("hot:k", "mine")
    blocked = asyncio.create_task(client.hot("BLPOP", "hot:never", 0.5))
    await asyncio.sleep(0.1)
    blocked.cancel()  # the request's deadline, say: BLPOP's reply comes later
    with pytest.raises(asyncio.CancelledError):
        await blocked
    after = asyncio.create_task(client.hot("GET", "hot:k"))  # written behind the BLPOP
    await asyncio.sleep(0.05)
    await client.rpush("hot:never", "late")  # BLPOP answers now, to nobody
    assert await after == "mine"


@needs_redis
async def test_run_script_loads_a_script_redis_forgot(client: cache.GuardedRedis) -> None:
    before = cache.redis()
    cache.use(client)
    try:
        script = client.register_script("return {KEYS[1], ARGV[1]}")
        assert await cache.run_script(script, ["k"], ["a"]) == ["k", "a"]
        await client.script_flush()  # a restarted Redis has no scripts
        assert await cache.run_script(script, ["k2"], [7]) == ["k2", "7"]
    finally:
        cache.use(before)


@needs_redis
async def test_an_unreachable_redis_is_a_fast_outage_through_the_breaker() -> None:
    down = cache.connect("redis://127.0.0.1:1/0")
    assert isinstance(down, cache.GuardedRedis)
    breaker.redis.reset()
    try:
        for _ in range(breaker.redis.failures):
            with pytest.raises(breaker.RedisUnavailable):
                await down.hot("GET", "k")
        with pytest.raises(breaker.RedisUnavailable):  # open: refused without trying
            await down.hot("GET", "k")
    finally:
        breaker.redis.reset()
        await down.aclose()


def test_the_lane_writes_commands_as_redis_py_would() -> None:
    from redis.asyncio.connection import Connection

    conn = Connection(decode_responses=True)
    for args in (("GET", "k"), ("EVALSHA", "ab" * 20, 3, "rl:scan:1", "code:p:x", "buf",
                                 "庆阳\x1f[\"staff\"]", "staff", "desk:20261202:"),
                 ("SET", b"\x00\xff", 1.5), ("INCRBY", "n", -7), ("SET", "big", "x" * 20000)):
        assert redislane.pack(args) == b"".join(conn.pack_command(*args)), args
    for bad in (None, True):
        with pytest.raises(TypeError):
            redislane.pack(("SET", "k", bad))


@needs_redis
async def test_a_reply_that_never_comes_is_a_bounded_outage(client: cache.GuardedRedis) -> None:
    """A frozen Redis, as the lane sees it: the read gives up after the socket timeout (give
    or take the quarter second of services.deadlines) and counts against the breaker."""
    from services.settings import get_settings

    timeout = get_settings().redis_timeout_seconds
    breaker.redis.reset()
    first = await client.hot("CLIENT", "ID")
    started = time.monotonic()
    try:
        with pytest.raises(breaker.RedisUnavailable):
            await client.hot("BLPOP", "hot:never", timeout * 3)
        took = time.monotonic() - started
        assert timeout <= took < timeout + 0.5
        assert breaker.redis._consecutive == 1
    finally:
        breaker.redis.reset()
    assert await client.hot("CLIENT", "ID") != first  # the timed-out connection is gone


@needs_redis
def test_a_client_used_from_a_new_event_loop_starts_afresh() -> None:
    c = cache.connect(REDIS_URL)
    assert isinstance(c, cache.GuardedRedis)
    assert asyncio.run(c.hot("PING")) == "PONG"
    assert asyncio.run(c.hot("PING")) == "PONG"  # the first loop, and its socket, are gone
    asyncio.run(c.aclose())


@pytest.mark.parametrize("path", ["client", "hot"])
async def test_a_half_open_trial_answered_with_an_error_reply_closes_the_circuit(
        client: cache.GuardedRedis, path: str) -> None:
    """After an outage the circuit lets one trial through; Redis answering it with an error
    reply (NOSCRIPT: a restarted Redis has forgotten the scripts) means Redis is up. Left
    unreported, the trial kept the circuit shut for another open period."""
    b = breaker.redis
    b.reset()
    try:
        for _ in range(b.failures):
            b.failure()
        b._open_until = time.monotonic() - 0.01  # the open period is over: half-open
        with pytest.raises(NoScriptError):
            if path == "hot":
                await client.hot("EVALSHA", "0" * 40, 0)
            else:
                await client.evalsha("0" * 40, 0)
        assert await client.ping()  # the next call goes through
        assert not b.is_open and b._consecutive == 0
    finally:
        b.reset()
