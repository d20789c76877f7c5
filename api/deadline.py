"""The request deadline (issue 16): no request waits on a stalled dependency longer than
``request_deadline_seconds``; past it the request is cancelled and answers 503 ``unavailable``.

Why not ``asyncio.timeout`` around each request: it costs ~8 µs a request (a timer handle
scheduled and cancelled, its context entered and left), a measurable share of a fast route
such as the scan, for a deadline that almost never fires. Here each request costs a dict
entry; one sweep per event loop, every quarter of a second (sooner for a short deadline) and
only while requests are in flight, cancels those past their time. So a deadline fires up to a
quarter of a second late, which a 10 s budget doesn't notice. The cancellation is told apart
from any other (a client gone away cancels too) and turned into the 503, as
``asyncio.timeout`` would turn it into ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import TypeVar

from services.errors import AppError, ErrorCode
from services.settings import get_settings

T = TypeVar("T")

_SWEEP_SECONDS = 0.25


class _Watch:
    """The requests in flight on one event loop: task -> [due (loop time), fired]."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.live: dict[asyncio.Task[object], list[float | bool]] = {}
        self.sweeping: asyncio.TimerHandle | None = None
        self.every = _SWEEP_SECONDS

    def start(self, budget: float) -> None:
        every = min(_SWEEP_SECONDS, budget / 4)
        if self.sweeping is None or every < self.every:
            if self.sweeping is not None:
                self.sweeping.cancel()
            self.every = every
            self.sweeping = self.loop.call_later(every, self.sweep)

    def sweep(self) -> None:
        self.sweeping = None
        now = self.loop.time()
        for task, entry in list(self.live.items()):
            if not entry[1] and float(entry[0]) <= now:
                entry[1] = True
                task.cancel()
        if self.live:
            self.sweeping = self.loop.call_later(self.every, self.sweep)
        else:
            self.every = _SWEEP_SECONDS


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = (
    weakref.WeakKeyDictionary())


async def within_deadline(work: Awaitable[T]) -> T:
    """``await work`` within the request's deadline, and so every query's: a dependency that
    stops answering costs a bounded wait and a 503, never a hung request."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch(loop)
    if task is None or task in watch.live:  # already under a deadline: the outer one rules
        return await work
    budget = get_settings().request_deadline_seconds
    entry: list[float | bool] = [loop.time() + budget, False]
    cancelling = task.cancelling()
    watch.live[task] = entry
    if watch.sweeping is None or watch.every > budget / 4:
        watch.start(budget)
    try:
        result = await work
    except asyncio.CancelledError as exc:
        if entry[1]:
            entry[1] = False  # our cancellation, accounted for here
            # Ours to answer only if nothing else asked to cancel this task meanwhile.
            if task.uncancel() <= cancelling:
                raise AppError(ErrorCode.unavailable, headers={"Retry-After": "5"}) from exc
        raise
    finally:
        del watch.live[task]
        if entry[1]:
            # The sweep fired but the work ended without seeing it (it swallowed the
            # cancellation, or raised something else): take the request back.
            task.uncancel()
    return result
