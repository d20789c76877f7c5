"""Bounded waits without a timer each: the request deadline (api/deadline.py) and the hot Redis
lane's read timeout (services/cache.py) on the scan route, where ``asyncio.timeout``'s ~8 µs
(a timer handle scheduled and cancelled, a context entered and left) was a measurable share of
the request, for bounds that almost never fire.

``arm(seconds)`` registers the running task with its due time (a set entry); one sweep per
event loop — every quarter of a second, sooner for a shorter bound, and only while something
is armed — cancels tasks past their time. So a bound fires up to a quarter of a second late
(a tenth of its length for a short one). ``disarm`` says whether the cancellation the task
got was this bound's, as ``asyncio.timeout`` tells its own from anyone else's (a client gone
away cancels too), and takes it back.
"""

from __future__ import annotations

import asyncio
import weakref

_SWEEP_SECONDS = 0.25


class Bound:
    __slots__ = ("cancelling", "done", "due", "fired", "task")

    def __init__(self, task: asyncio.Task[object], due: float) -> None:
        self.task = task
        self.due = due
        self.fired = False
        self.cancelling = task.cancelling()
        self.done = False


class _Sweep:
    """What is armed on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.armed: set[Bound] = set()
        self.handle: asyncio.TimerHandle | None = None
        self.every = _SWEEP_SECONDS

    def ensure(self, seconds: float) -> None:
        every = min(_SWEEP_SECONDS, seconds / 4)
        if self.handle is not None and every >= self.every:
            return
        if self.handle is not None:
            self.handle.cancel()
        self.every = every
        self.handle = self.loop.call_later(every, self.run)

    def run(self) -> None:
        self.handle = None
        now = self.loop.time()
        for bound in [b for b in self.armed if not b.fired and b.due <= now]:
            bound.fired = True
            bound.task.cancel()
        if self.armed:
            self.handle = self.loop.call_later(self.every, self.run)
        else:
            self.every = _SWEEP_SECONDS


_sweeps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep] = (
    weakref.WeakKeyDictionary())


def arm(seconds: float) -> Bound:
    """Cancel the running task if it is still armed ``seconds`` from now."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("deadlines.arm outside a task")
    sweep = _sweeps.get(loop)
    if sweep is None:
        sweep = _sweeps[loop] = _Sweep(loop)
    bound = Bound(task, loop.time() + seconds)
    sweep.armed.add(bound)
    if sweep.handle is None or sweep.every > seconds / 4:
        sweep.ensure(seconds)
    return bound


def disarm(bound: Bound) -> bool:
    """Stop watching; True if this bound cancelled the task and no one else asked to since it
    was armed — then the CancelledError in flight is the bound's to turn into its own error.
    Idempotent: a second call returns False."""
    if bound.done:
        return False
    bound.done = True
    sweep = _sweeps.get(bound.task.get_loop())
    if sweep is not None:
        sweep.armed.discard(bound)
    if not bound.fired:
        return False
    return bound.task.uncancel() <= bound.cancelling
