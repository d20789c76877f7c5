"""The transactional outbox: what must happen after a commit, written in the same commit."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class OutboxMessage(Model):
    """One effect to deliver after the transaction that wrote it commits (a subscribe message,
    a policy push, a reminder). ``dedup_key`` is unique: writing the same effect twice (a
    double-clicked publish, two sweeps) records it once. Delivered rows stay for a while as the
    record of what went out (``outbox_keep_days``, services/housekeeping.py); the dispatcher
    reads only the undelivered ones (status, available_at)."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=64)
    payload: fields.JSONField[Any] = fields.JSONField()
    dedup_key = fields.CharField(max_length=191, unique=True)
    # pending -> delivered, or dead after MAX_ATTEMPTS failures (kept for an operator).
    status = fields.CharField(max_length=16, default="pending")
    # Not before: a lease while a worker delivers it, and the back-off after a failure.
    available_at = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_messages"
        indexes = (("status", "available_at"),)
