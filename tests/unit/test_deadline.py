"""The request deadline without a timer per request (api/deadline.py): a stalled request is
answered 503 in about its budget; a quick one is untouched; a cancellation that isn't the
deadline's (a client gone) stays a cancellation; nested calls keep the outer deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.deadline import within_deadline
from services.errors import AppError, ErrorCode
from services.settings import get_settings


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(get_settings(), "request_deadline_seconds", 0.2)
    return 0.2


async def test_a_stalled_request_is_a_503_near_its_budget(budget: float) -> None:
    started = time.monotonic()
    with pytest.raises(AppError) as info:
        await within_deadline(asyncio.sleep(5))
    took = time.monotonic() - started
    assert info.value.code is ErrorCode.unavailable and info.value.headers["Retry-After"] == "5"
    assert budget <= took < budget * 1.5 + 0.05
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the request goes on to answer
    assert await within_deadline(asyncio.sleep(0, result="next")) == "next"


async def test_quick_requests_are_untouched(budget: float) -> None:
    async def one(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    assert await asyncio.gather(*(within_deadline(one(i)) for i in range(50))) == list(range(50))
    await asyncio.sleep(budget * 2)  # the sweep finds nothing to cancel and stops


async def test_someone_elses_cancellation_stays_a_cancellation(budget: float) -> None:
    task = asyncio.ensure_future(within_deadline(asyncio.sleep(5)))
    await asyncio.sleep(0.05)
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_work_that_swallows_the_cancellation_is_not_left_cancelled(budget: float) -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    assert await within_deadline(stubborn()) == "finished anyway"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_nested_call_keeps_the_outer_deadline(budget: float) -> None:
    async def inner() -> None:
        await within_deadline(asyncio.sleep(5))

    started = time.monotonic()
    with pytest.raises(AppError):
        await within_deadline(inner())
    assert time.monotonic() - started < budget * 1.5 + 0.05
