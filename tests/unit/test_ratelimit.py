"""The fixed-window limiter (services/ratelimit.py): one Lua call per hit."""

from __future__ import annotations

import pytest

from services import cache, ratelimit
from services.errors import AppError, ErrorCode


async def test_the_limit_admits_that_many_then_says_when_to_retry() -> None:
    for _ in range(3):
        await ratelimit.hit("t:one", limit=3, window_seconds=60)
    with pytest.raises(AppError) as refused:
        await ratelimit.hit("t:one", limit=3, window_seconds=60)
    assert refused.value.code is ErrorCode.rate_limited
    retry = int(refused.value.headers["Retry-After"])
    assert 1 <= retry <= 60 and refused.value.extra["retry_after"] == retry
    # Another key keeps its own count; the window expires with the key.
    await ratelimit.hit("t:two", limit=3, window_seconds=60)
    assert 0 < await cache.redis().ttl("rl:t:one") <= 60


async def test_a_count_left_without_an_expiry_gets_one() -> None:
    await cache.redis().set("rl:t:stuck", 7)  # e.g. written by an older limiter
    await ratelimit.hit("t:stuck", limit=100, window_seconds=30)
    assert 0 < await cache.redis().ttl("rl:t:stuck") <= 30
