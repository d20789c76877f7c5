"""Replies remembered per (user, Idempotency-Key) so a retried write returns the first result."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class IdempotencyRecord(Model):
    id = fields.BigIntField(primary_key=True)
    user_id = fields.BigIntField()
    key = fields.CharField(max_length=128)
    request_hash = fields.CharField(max_length=64)
    status = fields.IntField()
    body: fields.JSONField[Any] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    # Who holds an unfinished ("in progress") key and since when: a claim older than the lease
    # was abandoned (worker killed, database frozen, client gone) and a retry may take it over.
    claim_token = fields.CharField(max_length=32, default="")
    claimed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "idempotency_records"
        unique_together = (("user_id", "key"),)
        # The retention sweep (services/housekeeping.py) deletes by age.
        indexes = (("created_at",),)
