"""Whether a process on this machine is still running (worker readiness, scan-log journals)."""

from __future__ import annotations

import os
from typing import Any


def pid_alive(pid: Any) -> bool:
    """True while ``pid`` names a running process. A SIGKILLed worker stays a zombie until its
    parent reaps it, so a zombie counts as dead; a process we may not signal counts as alive."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
