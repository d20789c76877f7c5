"""Idempotency-Key support for writes a flaky mobile network may repeat.

The first reply to (user, key) is stored in the database with a hash of the request; the same
key with the same request returns that reply, with a different request it is a 409.

Promises under faults (issue 16):
- **Stored with the work.** The action runs inside one transaction that also writes its reply
  into the key's row, so "committed" and "reply stored" are one fact: a client whose request
  committed but who saw a 500 or a timeout gets the original 201 on retry.
- **Never stuck.** A key is claimed with a lease (``claim_token`` + ``claimed_at``). If its
  holder vanished (worker killed, database frozen, deadline hit), a retry after
  ``idempotency_lease_seconds`` takes the claim over. The old holder can no longer finish: its
  final write is conditional on still holding the token, and failing it rolls its work back.
- **Replays first.** A retry is answered from the stored row before the caller's rate limit
  (``admit``) runs and without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.idempotency import IdempotencyRecord
from services import clock, db
from services.errors import AppError, ErrorCode
from services.settings import get_settings

Action = Callable[[], Awaitable[tuple[int, Any]]]

_PENDING = 0


class _LostClaim(Exception):
    """Our lease ran out and a retry took the key over while we worked: our work must not
    commit (the retry's will)."""


def request_fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def run_once(
    *,
    user_id: int,
    key: str | None,
    fingerprint: str,
    action: Action,
    admit: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, Any]:
    """Run ``action`` (returning status and JSON body) unless this key already ran it.

    ``admit`` (a rate limit) runs only for a request that will act: never for a replay.
    Refusals (4xx) are remembered like successes: a retry must not turn "slot full" into a
    different answer. The action runs in a transaction (its own ``in_transaction`` blocks
    become savepoints; deadlock retries happen here, around the whole thing).
    """
    if not key:
        if admit is not None:
            await admit()
        return await action()
    if len(key) > 128:
        raise AppError(ErrorCode.validation_failed, fields={"Idempotency-Key": "最长128个字符"})
    token = uuid.uuid4().hex
    claim = await _claim(user_id=user_id, key=key, fingerprint=fingerprint, token=token,
                         admit=admit)
    if isinstance(claim, tuple):
        return claim  # a replay

    async def attempt() -> tuple[int, Any]:
        async with in_transaction():
            status, body = await action()
            await _settle(claim, token, status, body)
            return status, body

    try:
        return await db.retrying(attempt)
    except _LostClaim:
        return _replay(await IdempotencyRecord.get(id=claim.id), fingerprint)
    except AppError as exc:
        # A refusal: the action's writes rolled back; remember the answer on its own.
        status, body = exc.status, exc.body()
        try:
            await _settle(claim, token, status, body)
        except _LostClaim:
            return _replay(await IdempotencyRecord.get(id=claim.id), fingerprint)
        return status, body
    except BaseException:
        # Nothing committed: free the key at once if the database lets us; if it doesn't
        # (it is what failed), the lease frees it.
        # Bounded: after a deadline this task must not wait on a frozen database again.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(IdempotencyRecord.filter(
                id=claim.id, claim_token=token, status=_PENDING).delete(), 2)
        raise


async def _claim(*, user_id: int, key: str, fingerprint: str, token: str,
                 admit: Callable[[], Awaitable[None]] | None
                 ) -> IdempotencyRecord | tuple[int, Any]:
    """Our pending row for (user, key), or the stored reply to replay."""
    existing = await IdempotencyRecord.get_or_none(user_id=user_id, key=key)
    if existing is not None:
        return await _existing(existing, fingerprint, token)
    if admit is not None:
        await admit()
    try:
        return await IdempotencyRecord.create(
            user_id=user_id, key=key, request_hash=fingerprint, status=_PENDING, body={},
            claim_token=token, claimed_at=clock.now())
    except IntegrityError:
        # The same request arrived twice at once: the other copy holds the claim.
        existing = await IdempotencyRecord.get(user_id=user_id, key=key)
        return await _existing(existing, fingerprint, token)


async def _existing(record: IdempotencyRecord, fingerprint: str,
                    token: str) -> IdempotencyRecord | tuple[int, Any]:
    if record.request_hash != fingerprint:
        raise AppError(ErrorCode.idempotency_conflict)
    if record.status != _PENDING:
        return record.status, record.body
    lease = timedelta(seconds=get_settings().idempotency_lease_seconds)
    claimed_at = record.claimed_at or record.created_at
    if clock.now() - claimed_at < lease:
        wait = max(1, int((claimed_at + lease - clock.now()).total_seconds()) + 1)
        raise AppError(ErrorCode.conflict, "相同的请求正在处理中，请稍后重试",
                       headers={"Retry-After": str(wait)})
    # Abandoned: take it over, conditionally, so two retries can't both win.
    taken = await IdempotencyRecord.filter(
        id=record.id, status=_PENDING, claim_token=record.claim_token
    ).update(claim_token=token, claimed_at=clock.now())
    if not taken:
        raise AppError(ErrorCode.conflict, "相同的请求正在处理中，请稍后重试",
                       headers={"Retry-After": "1"})
    await record.refresh_from_db()
    return record


async def _settle(claim: IdempotencyRecord, token: str, status: int, body: Any) -> None:
    done = await IdempotencyRecord.filter(
        id=claim.id, claim_token=token, status=_PENDING).update(status=status, body=body)
    if not done:
        raise _LostClaim


def _replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, Any]:
    if record.request_hash != fingerprint:
        raise AppError(ErrorCode.idempotency_conflict)
    if record.status == _PENDING:
        raise AppError(ErrorCode.conflict, "相同的请求正在处理中，请稍后重试",
                       headers={"Retry-After": "1"})
    return record.status, record.body
