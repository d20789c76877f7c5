"""The request deadline (issue 16): no request waits on a stalled dependency longer than
``request_deadline_seconds``; past it the request is cancelled and answers 503 ``unavailable``.
Armed with ``services.deadlines`` (a set entry a request, one sweep per loop) rather than
``asyncio.timeout`` (~8 µs a request): it fires up to a quarter of a second late, which a 10 s
budget doesn't notice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from services import deadlines
from services.errors import AppError, ErrorCode
from services.settings import get_settings

T = TypeVar("T")

_under_deadline: set[asyncio.Task[object]] = set()


async def within_deadline(work: Awaitable[T]) -> T:
    """``await work`` within the request's deadline, and so every query's: a dependency that
    stops answering costs a bounded wait and a 503, never a hung request."""
    task = asyncio.current_task()
    if task is None or task in _under_deadline:  # already under one: the outer one rules
        return await work
    bound = deadlines.arm(get_settings().request_deadline_seconds)
    _under_deadline.add(task)
    try:
        return await work
    except asyncio.CancelledError as exc:
        if deadlines.disarm(bound):
            raise AppError(ErrorCode.unavailable, headers={"Retry-After": "5"}) from exc
        raise
    finally:
        _under_deadline.discard(task)
        deadlines.disarm(bound)
