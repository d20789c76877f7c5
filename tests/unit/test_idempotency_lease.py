"""Idempotency-Key promises under faults: abandoned claims are released after the lease, the
reply is stored with the work, a replay skips the rate limit, a lost claim never commits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models.idempotency import IdempotencyRecord
from models.users import User
from services import clock, idempotency
from services.errors import AppError, ErrorCode
from services.settings import get_settings


async def _user() -> int:
    user = await User.create(openid="o-idem")
    return int(user.id)


async def test_abandoned_claim_is_taken_over_after_the_lease() -> None:
    uid = await _user()
    fp = idempotency.request_fingerprint("POST", "/x", {"a": 1})
    lease = get_settings().idempotency_lease_seconds
    # A worker claimed the key and died: its row stays "in progress".
    await IdempotencyRecord.create(user_id=uid, key="k1", request_hash=fp, status=0, body={},
                                   claim_token="dead", claimed_at=clock.now())
    ran: list[int] = []

    async def action() -> tuple[int, Any]:
        ran.append(1)
        await User.create(openid=f"o-made-{len(ran)}")
        return 201, {"made": True}

    with pytest.raises(AppError) as busy:
        await idempotency.run_once(user_id=uid, key="k1", fingerprint=fp, action=action)
    assert busy.value.code is ErrorCode.conflict and "Retry-After" in busy.value.headers
    await IdempotencyRecord.filter(user_id=uid, key="k1").update(
        claimed_at=clock.now() - timedelta(seconds=lease + 1))
    assert await idempotency.run_once(user_id=uid, key="k1", fingerprint=fp,
                                      action=action) == (201, {"made": True})
    assert await idempotency.run_once(user_id=uid, key="k1", fingerprint=fp,
                                      action=action) == (201, {"made": True})
    assert ran == [1]


async def test_reply_commits_with_the_work_and_a_lost_claim_rolls_the_work_back() -> None:
    uid = await _user()
    fp = idempotency.request_fingerprint("POST", "/x", {})

    async def taken_over_meanwhile() -> tuple[int, Any]:
        await User.create(openid="o-should-roll-back")
        # Our lease ran out and a retry took the key over while we worked.
        await IdempotencyRecord.filter(user_id=uid, key="k2").update(claim_token="other")
        return 201, {"id": 1}

    with pytest.raises(AppError):  # the row is the other attempt's, still in progress
        await idempotency.run_once(user_id=uid, key="k2", fingerprint=fp,
                                   action=taken_over_meanwhile)
    assert not await User.exists(openid="o-should-roll-back")

    async def fine() -> tuple[int, Any]:
        await User.create(openid="o-kept")
        return 201, {"ok": 1}

    await idempotency.run_once(user_id=uid, key="k3", fingerprint=fp, action=fine)
    row = await IdempotencyRecord.get(user_id=uid, key="k3")
    assert (row.status, row.body) == (201, {"ok": 1}) and await User.exists(openid="o-kept")


async def test_a_replay_is_answered_before_the_rate_limit() -> None:
    uid = await _user()
    fp = idempotency.request_fingerprint("POST", "/x", {})
    admitted: list[int] = []

    async def admit() -> None:
        admitted.append(1)
        if len(admitted) > 1:
            raise AppError(ErrorCode.rate_limited)

    async def action() -> tuple[int, Any]:
        return 201, {"n": 1}

    for _ in range(3):
        assert await idempotency.run_once(user_id=uid, key="k4", fingerprint=fp, action=action,
                                          admit=admit) == (201, {"n": 1})
    assert admitted == [1]


async def test_a_refusal_is_remembered_and_its_writes_undone() -> None:
    uid = await _user()
    fp = idempotency.request_fingerprint("POST", "/x", {})

    async def refuse() -> tuple[int, Any]:
        await User.create(openid="o-half-written")
        raise AppError(ErrorCode.slot_full)

    first = await idempotency.run_once(user_id=uid, key="k5", fingerprint=fp, action=refuse)
    assert first[0] == 409 and first[1]["error"]["code"] == "slot_full"
    assert not await User.exists(openid="o-half-written")
    assert await idempotency.run_once(user_id=uid, key="k5", fingerprint=fp,
                                      action=refuse) == first
