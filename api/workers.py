"""Workers that come back, and readiness that knows when one is missing.

Sanic 25.12's worker manager notices a dead worker (its state turns FAILED) but never starts a
new one: with ``--workers 2`` a SIGKILLed worker stayed dead and the port kept accepting
connections that nobody served. The manager can restart a process on request, so a watcher
thread in the main process asks it to whenever a server worker has died. Readiness reads the
same shared worker state, so a probe answered by a surviving worker says one is missing until
the replacement is up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sanic import Sanic

from services.processes import pid_alive

log = logging.getLogger("xq.workers")

WATCH_SECONDS = 0.5
_SERVER_PREFIX = "Sanic-Server"


def install(app: Sanic) -> None:  # type: ignore[type-arg]
    @app.main_process_ready
    async def watch_workers(app: Sanic) -> None:  # type: ignore[type-arg]
        stop = threading.Event()
        thread = threading.Thread(target=_watch, args=(app.manager, stop), daemon=True,
                                  name="xq-worker-watch")
        thread.start()
        _stops.append(stop)

    @app.main_process_stop
    async def stop_watching(_app: Sanic) -> None:  # type: ignore[type-arg]
        for stop in _stops:
            stop.set()


_stops: list[threading.Event] = []


def _watch(manager: Any, stop: threading.Event) -> None:
    while not stop.wait(WATCH_SECONDS):
        if getattr(manager, "_shutting_down", False):
            return
        for process in list(manager.processes):
            if not process.name.startswith(_SERVER_PREFIX):
                continue
            # Only a worker that died on its own: one the manager is stopping is TERMINATED
            # (set before its signal), one that exited cleanly COMPLETED; leave those be.
            if process.is_alive() or process.state.name not in (
                    "FAILED", "ACKED", "STARTED", "JOINED"):
                continue
            log.warning("worker died; restarting it",
                        extra={"worker": process.name, "exitcode": process.exitcode})
            try:
                manager.restart(process_names=[process.name])
            except Exception:
                log.exception("worker restart failed", extra={"worker": process.name})


def all_alive(app: Sanic) -> bool:  # type: ignore[type-arg]
    """Whether every server worker the manager runs is alive (True outside a manager, e.g. in
    tests or under an ASGI server, where there is nothing else to know)."""
    try:
        states: dict[str, Any] = app.m.workers
    except Exception:
        return True
    for name, state in states.items():
        if not name.startswith(_SERVER_PREFIX) or not isinstance(state, dict):
            continue
        # ACKED: the worker said it serves. A replacement still importing the app (STARTING)
        # counts as missing, like the dead one it replaces.
        if state.get("state") != "ACKED" or not pid_alive(state.get("pid")):
            return False
    return True
