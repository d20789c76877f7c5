"""Retention sweeps (services/housekeeping.py): old delivered outbox rows and old
Idempotency-Key replies go; pending, dead and recent ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.idempotency import IdempotencyRecord
from models.outbox import OutboxMessage
from services import clock, housekeeping, jobs, outbox


async def _row(key: str, status: str, age: timedelta) -> None:
    await OutboxMessage.create(kind="k", payload={}, dedup_key=key, status=status,
                               available_at=clock.now() - age)


async def test_old_delivered_outbox_rows_go_and_the_rest_stay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(housekeeping, "BATCH", 2)  # several batches
    for i in range(5):
        await _row(f"old-{i}", outbox.DELIVERED, timedelta(days=31))
    await _row("recent", outbox.DELIVERED, timedelta(days=29))
    await _row("old-pending", outbox.PENDING, timedelta(days=40))
    await _row("old-dead", outbox.DEAD, timedelta(days=40))
    assert await housekeeping.purge_outbox() == 5
    left = set(await OutboxMessage.all().values_list("dedup_key", flat=True))
    assert left == {"recent", "old-pending", "old-dead"}


async def test_idempotency_replies_are_forgotten_after_a_day() -> None:
    for i, hours in enumerate((25, 30, 23)):
        rec = await IdempotencyRecord.create(user_id=1, key=f"k{i}", request_hash="h",
                                             status=201, body={})
        await IdempotencyRecord.filter(id=rec.id).update(
            created_at=clock.now() - timedelta(hours=hours))
    assert await housekeeping.purge_idempotency() == 2
    assert await IdempotencyRecord.all().values_list("key", flat=True) == ["k2"]


def test_the_sweep_is_registered_where_jobs_run() -> None:
    jobs.load_registrations()
    assert "housekeeping.retention" in jobs._periodic
