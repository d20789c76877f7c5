"""The Redis job queue: dedup, retries, lease expiry, one runner per periodic tick."""

import time

from services import cache, jobs


async def test_enqueue_runs_once_and_dedups_by_key():
    seen = []

    @jobs.handler("t.collect")
    async def collect(payload):
        seen.append(payload["n"])

    await jobs.enqueue("t.collect", {"n": 1}, key="k1")
    await jobs.enqueue("t.collect", {"n": 2}, key="k1")  # same key while pending: no-op
    await jobs.enqueue("t.collect", {"n": 3})
    assert await jobs.run_due() == 2
    assert sorted(seen) == [1, 3]
    assert await jobs.run_due() == 0


async def test_delayed_job_waits():
    seen = []

    @jobs.handler("t.later")
    async def later(payload):
        seen.append(1)

    await jobs.enqueue("t.later", {}, delay_seconds=60)
    assert await jobs.run_due() == 0 and seen == []


async def test_failed_job_is_retried_with_backoff():
    attempts = []

    @jobs.handler("t.flaky")
    async def flaky(payload):
        attempts.append(1)
        raise RuntimeError("boom")

    job_id = await jobs.enqueue("t.flaky", {})
    await jobs.run_due()
    assert len(attempts) == 1
    score = await cache.redis().zscore(jobs.QUEUE, job_id)
    assert score is not None and score > time.time()  # pushed into the future, not lost


async def test_a_crashed_worker_lease_expires_and_another_takes_over():
    seen = []

    @jobs.handler("t.lease")
    async def lease(payload):
        seen.append(1)

    job_id = await jobs.enqueue("t.lease", {})
    r = cache.redis()
    # Simulate a worker that claimed the job and died: its lease is in the past.
    await r.zadd(jobs.QUEUE, {job_id: time.time() - 1})
    assert await jobs.run_due() == 1 and seen == [1]


async def test_periodic_tick_is_claimed_by_one_worker():
    runs = []

    @jobs.periodic("t.sweep", every_seconds=30)
    async def sweep():
        runs.append(1)

    try:
        first = await jobs.run_periodic_once()
        second = await jobs.run_periodic_once()  # another worker, same interval
        assert "t.sweep" in first and "t.sweep" not in second
        assert runs == [1]
    finally:
        jobs._periodic.pop("t.sweep")
