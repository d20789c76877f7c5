"""Retention of the bookkeeping tables that grow with every request: delivered outbox rows and
answered idempotency keys. Each sweep deletes by age in small batches (each its own short
statement, so no long lock on a busy table) and stops after a bounded amount of work per
tick; the next tick goes on. Dead outbox rows are kept for an operator, and a notice's
exactly-once lives in the notifications table, so dropping an old delivered row can't make a
notice go out twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tortoise.models import Model

from models.idempotency import IdempotencyRecord
from models.outbox import OutboxMessage
from services import clock, jobs, outbox
from services.settings import get_settings

BATCH = 500
MAX_BATCHES = 20  # per tick: 10,000 rows, then the next tick


async def _delete_in_batches(model: type[Model], **older: Any) -> int:
    """Delete the rows of ``model`` matching ``older`` by id, BATCH at a time, at most
    MAX_BATCHES a call; returns how many went."""
    done = 0
    for _ in range(MAX_BATCHES):
        ids = await model.filter(**older).order_by("id").limit(BATCH).values_list(
            "id", flat=True)
        if not ids:
            break
        done += await model.filter(id__in=list(ids)).delete()
    return done


async def purge_outbox() -> int:
    """Delete delivered outbox rows older than ``outbox_keep_days``; returns how many."""
    cutoff = clock.now() - timedelta(days=get_settings().outbox_keep_days)
    # (status, available_at) is the dispatcher's index; a delivered row was available before
    # it was delivered, so its age by available_at is never younger than the cut.
    return await _delete_in_batches(OutboxMessage, status=outbox.DELIVERED,
                                    available_at__lt=cutoff)


async def purge_idempotency() -> int:
    """Forget Idempotency-Key replies older than ``idempotency_keep_hours``; returns how many.
    (An unfinished claim that old was abandoned long ago: its lease is minutes.)"""
    cutoff = clock.now() - timedelta(hours=get_settings().idempotency_keep_hours)
    return await _delete_in_batches(IdempotencyRecord, created_at__lt=cutoff)


@jobs.periodic("housekeeping.retention", every_seconds=3600)
async def retention() -> None:
    await purge_outbox()
    await purge_idempotency()
