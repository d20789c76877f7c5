"""The one door to Redis.

``memory://`` gives fakeredis (with Lua, for the scripts the job queue and rate limiter use)
so a laptop needs no server; it lives in this process only, which is why several workers need
a real ``redis://`` server. Everything else in the code takes the client from here.
"""

from __future__ import annotations

from redis.asyncio import Redis

_client: Redis | None = None


def connect(url: str) -> Redis:
    if url.startswith("memory://"):
        import fakeredis

        server = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


async def open_cache(url: str) -> Redis:
    global _client
    _client = connect(url)
    return _client


def use(client: Redis) -> None:
    """Install an already-open client (tests share one across the app and services)."""
    global _client
    _client = client


def redis() -> Redis:
    if _client is None:
        raise RuntimeError("Redis is not open: open_cache() runs at worker start")
    return _client


async def close_cache() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


async def ping() -> bool:
    try:
        return bool(await redis().ping())
    except Exception:
        return False
