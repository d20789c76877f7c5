"""Redis killed, restarted empty and frozen under the in-process app, on a redis-server of the
test's own: promises kept (the outbox), outages fast 503s, and no request lost after it's back.
Figures go to docs/reliability.md (printed with -s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.notifications import Notification
from models.policies import Audience
from models.users import Person, Role, User
from services import breaker, cache, identity, jobs, notifications, people, policies
from services.auth import Principal
from tests.faults.conftest import RedisServer

STAFF = Principal(user_id=1, roles=frozenset({Role.staff.value}))


@pytest.fixture
async def redis_of_our_own(own_redis: RedisServer) -> AsyncIterator[RedisServer]:
    """Point the app and the services at the test's own Redis for this test."""
    before = cache.redis()
    client = cache.connect(own_redis.url)
    cache.use(client)
    breaker.redis.reset()
    open_seconds = breaker.redis.open_seconds
    breaker.redis.open_seconds = 1.0
    try:
        yield own_redis
    finally:
        breaker.redis.open_seconds = open_seconds
        breaker.redis.reset()
        cache.use(before)
        await client.aclose()


def _id_number(n: int) -> str:
    first17 = f"62100219800101{n:03d}"
    return first17 + identity._id_check_char(first17)


async def _subscribers(count: int) -> list[int]:
    ids = []
    for n in range(count):
        person: Person = await people.upsert_person(name=f"居民{n}", id_number=_id_number(n))
        user = await User.create(openid=f"o-fault-{n}", person=person)
        await notifications.record_subscription(user_id=user.id, template=policies.TEMPLATE,
                                                accepted=True)
        ids.append(user.id)
    return ids


async def test_published_policy_reaches_every_subscriber_once_across_an_empty_restart(
    api: Any, fake_wechat: Any, redis_of_our_own: RedisServer
) -> None:
    users = await _subscribers(20)
    staff = await api.login("fault-staff", Role.staff)
    p = await policies.create_policy(actor=STAFF, code="P-F16", title="故障演练政策",
                                     department="市民政局", theme="", audience=Audience.person,
                                     criteria={}, summary="摘要")
    resp = await staff.post(f"/api/v1/admin/policies/{p.id}/publish")
    assert resp.status == 200
    # Redis dies the moment the answer is out and comes back empty: the old queue lost the push
    # here (0 of 20). The promise is in the database now.
    redis_of_our_own.kill()
    redis_of_our_own.start()
    again = await staff.post(f"/api/v1/admin/policies/{p.id}/publish")  # a double click
    assert again.status == 200

    stop = asyncio.Event()
    started = time.monotonic()
    loop = asyncio.create_task(jobs.worker_loop(stop, poll_seconds=0.2))
    loop2 = asyncio.create_task(jobs.worker_loop(stop, poll_seconds=0.2))  # a second worker
    try:
        while time.monotonic() - started < 20:
            if await Notification.filter(template=policies.TEMPLATE, status="sent").count() >= 20:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # long enough for a duplicate to show if one were coming
    finally:
        stop.set()
        await asyncio.gather(loop, loop2)
    delivered_in = time.monotonic() - started
    per_user = {u: await Notification.filter(user_id=u, template=policies.TEMPLATE).count()
                for u in users}
    assert per_user == {u: 1 for u in users}
    sent = [m for m in fake_wechat.sent_messages if m["data"]["thing1"]["value"] == "故障演练政策"]
    assert len(sent) == 20
    print(f"\nFIGURE outbox: 20/20 subscribers messaged once after an empty Redis restart, "
          f"in {delivered_in:.2f}s; duplicates 0")


async def test_redis_outage_is_a_fast_503_and_other_routes_keep_their_speed(
    api: Any, redis_of_our_own: RedisServer
) -> None:
    me = await api.login("fault-resident")

    async def timed(call: Any) -> tuple[int, float, Any]:
        t = time.perf_counter()
        resp = await call
        return resp.status, time.perf_counter() - t, resp

    base = [await timed(me.get("/api/v1/appointments")) for _ in range(10)]
    assert all(s == 200 for s, _, _ in base)
    base_ms = sorted(d for _, d, _ in base)[5] * 1000

    redis_of_our_own.kill()
    logins = [await timed(api.post("/api/v1/auth/wechat-login", json={"code": f"c{i}"}))
              for i in range(20)]
    reads = [await timed(me.get("/api/v1/appointments")) for _ in range(10)]
    for status, seconds, resp in logins:
        assert status == 503 and seconds < 1.5
        assert resp.json["error"]["code"] == "unavailable"
        assert int(resp.headers["retry-after"]) >= 1
    assert all(s == 200 for s, _, _ in reads)
    down_ms = sorted(d for _, d, _ in reads)[5] * 1000
    assert down_ms < base_ms * 3 + 20
    print(f"\nFIGURE redis killed: 20 logins -> 20x503 (max {max(d for _, d, _ in logins):.3f}s); "
          f"reads not touching Redis: median {base_ms:.1f} ms before, {down_ms:.1f} ms during")

    redis_of_our_own.start()
    await asyncio.sleep(breaker.redis.open_seconds + 0.1)
    after = [await timed(api.post("/api/v1/auth/wechat-login", json={"code": f"c{i}"}))
             for i in range(10)]
    assert [s for s, _, _ in after] == [200] * 10  # no "connection closed" on stale sockets


async def test_frozen_redis_costs_one_timeout_then_the_circuit_answers_at_once(
    api: Any, redis_of_our_own: RedisServer
) -> None:
    await api.post("/api/v1/auth/wechat-login", json={"code": "warm"})  # pooled connections
    redis_of_our_own.freeze()
    try:
        durations = []
        for i in range(10):
            t = time.perf_counter()
            resp = await api.post("/api/v1/auth/wechat-login", json={"code": f"f{i}"})
            durations.append(time.perf_counter() - t)
            assert resp.status == 503
        # The first few wait out the socket timeout (1 s); once open, the circuit answers at once.
        assert max(durations) < 2.5
        assert max(durations[breaker.redis.failures:]) < 0.2
        t = time.perf_counter()
        assert (await api.get("/readyz")).json["down"] == ["redis"]
        assert time.perf_counter() - t < 3
    finally:
        redis_of_our_own.thaw()
    print(f"\nFIGURE redis frozen: 10 logins -> 10x503, first {durations[0]:.2f}s, "
          f"then max {max(durations[breaker.redis.failures:]) * 1000:.0f} ms")
    await asyncio.sleep(breaker.redis.open_seconds + 0.1)
    assert (await api.post("/api/v1/auth/wechat-login", json={"code": "back"})).status == 200
