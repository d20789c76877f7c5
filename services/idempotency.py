"""Idempotency-Key support for writes a flaky mobile network may repeat.

The first reply to (user, key) is stored in the database with a hash of the request; the same
key with the same request returns that reply, with a different request it is a 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tortoise.exceptions import IntegrityError

from models.idempotency import IdempotencyRecord
from services.errors import AppError, ErrorCode


def request_fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def run_once(
    *,
    user_id: int,
    key: str | None,
    fingerprint: str,
    action: Callable[[], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any]:
    """Run ``action`` (returning status and JSON body) unless this key already ran it.

    The key is claimed with a pending row *before* the action runs, so two copies of the same
    request arriving together can't both act; the loser is told to retry. Refusals (4xx) are
    remembered like successes: a retry must not turn "slot full" into a different answer.
    """
    if not key:
        return await action()
    if len(key) > 128:
        raise AppError(ErrorCode.validation_failed, fields={"Idempotency-Key": "最长128个字符"})
    try:
        claim = await IdempotencyRecord.create(
            user_id=user_id, key=key, request_hash=fingerprint, status=_PENDING, body={}
        )
    except IntegrityError:
        return _replay(await IdempotencyRecord.get(user_id=user_id, key=key), fingerprint)
    try:
        status, body = await action()
    except AppError as exc:
        status, body = exc.status, exc.body()
    except BaseException:
        await claim.delete()  # nothing happened; let a retry try again
        raise
    claim.status, claim.body = status, body
    await claim.save(update_fields=["status", "body"])
    return status, body


_PENDING = 0


def _replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, Any]:
    if record.request_hash != fingerprint:
        raise AppError(ErrorCode.idempotency_conflict)
    if record.status == _PENDING:
        raise AppError(ErrorCode.conflict, "相同的请求正在处理中，请稍后重试")
    return record.status, record.body
