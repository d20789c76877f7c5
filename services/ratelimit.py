"""Fixed-window rate limits kept in Redis, so every worker counts the same requests."""

from __future__ import annotations

from services import cache
from services.errors import AppError, ErrorCode


async def hit(key: str, *, limit: int, window_seconds: int, message: str | None = None) -> None:
    """Count one hit against ``key``; raise ``rate_limited`` with Retry-After once over."""
    r = cache.redis()
    name = f"rl:{key}"
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, window_seconds, nx=True)
        pipe.ttl(name)
        count, _, ttl = await pipe.execute()
    if int(count) > limit:
        retry = max(1, int(ttl))
        raise AppError(
            ErrorCode.rate_limited,
            message,
            headers={"Retry-After": str(retry)},
            extra={"retry_after": retry},
        )
