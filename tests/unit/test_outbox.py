"""The outbox: promised with the transaction, delivered after it, at least once, deduplicated;
and the breaker that turns an outage into a fast refusal."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from models.outbox import OutboxMessage
from services import breaker, clock, outbox

seen: list[dict[str, Any]] = []
fail_next: list[bool] = []


@outbox.handler("test.record")
async def _record(payload: dict[str, Any]) -> None:
    if fail_next:
        fail_next.pop()
        raise RuntimeError("WeChat said no")
    seen.append(payload)


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()
    fail_next.clear()


async def test_promised_with_the_commit_and_never_with_a_rollback() -> None:
    async with in_transaction() as conn:
        assert await outbox.add("test.record", {"n": 1}, "t:1", using_db=conn)
        assert not await outbox.add("test.record", {"n": 1}, "t:1", using_db=conn)  # same promise
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            await outbox.add("test.record", {"n": 2}, "t:2", using_db=conn)
            raise RuntimeError("the business change failed")
    assert await outbox.dispatch_due() == 1
    assert seen == [{"n": 1}]
    assert await outbox.dispatch_due() == 0  # delivered once
    row = await OutboxMessage.get(dedup_key="t:1")
    assert row.status == outbox.DELIVERED and row.delivered_at is not None


async def test_a_failed_delivery_is_retried_after_a_back_off() -> None:
    await outbox.add("test.record", {"n": 3}, "t:3")
    fail_next.append(True)
    assert await outbox.dispatch_due() == 0
    row = await OutboxMessage.get(dedup_key="t:3")
    assert row.status == outbox.PENDING and row.attempts == 1 and "WeChat said no" in row.last_error
    assert await outbox.dispatch_due() == 0  # backing off
    await OutboxMessage.filter(id=row.id).update(available_at=clock.now())
    assert await outbox.dispatch_due() == 1 and seen == [{"n": 3}]


async def test_a_delivery_whose_worker_died_is_taken_again_after_the_lease() -> None:
    await outbox.add("test.record", {"n": 4}, "t:4")
    # A worker claimed it (moved available_at a lease ahead) and was killed.
    await OutboxMessage.filter(dedup_key="t:4").update(
        available_at=clock.now() + timedelta(seconds=outbox.LEASE_SECONDS), attempts=1)
    assert await outbox.dispatch_due() == 0
    await OutboxMessage.filter(dedup_key="t:4").update(available_at=clock.now())
    assert await outbox.dispatch_due() == 1 and seen == [{"n": 4}]


async def test_unknown_kinds_are_refused_when_promised() -> None:
    with pytest.raises(LookupError):
        await outbox.add("test.nobody", {}, "t:5")


def test_breaker_opens_after_failures_then_lets_one_trial_through() -> None:
    b = breaker.Breaker("redis", failures=2, open_seconds=0.2)
    b.failure()
    assert b.allow()
    b.failure()
    assert not b.allow() and b.is_open
    with pytest.raises(breaker.RedisUnavailable):
        b.check()
    assert b.retry_after() >= 1
    time.sleep(0.25)
    assert b.allow()  # the trial
    assert not b.allow()  # only one at a time
    b.success()
    assert b.allow() and not b.is_open
