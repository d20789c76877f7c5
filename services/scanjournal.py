"""A local write-ahead journal for scan-log lines, so a scan answered 200 keeps its log line
even if Redis restarts empty before the buffer is flushed (issue 16).

Why a local file and not the outbox table: a scan is one Redis round trip by design
(docs/codes.md); a database INSERT per scan would triple its cost. Appending a line to a file
is one ``write`` to the kernel: it survives the worker being killed and Redis losing its
memory, without depending on Redis' AOF settings. (It does not survive the machine losing
power before the kernel writes the page out — seconds; a power cut also takes the scans'
answers with it.) The Redis buffer stays the fast path that makes a scan visible in the
resident's list a second later; the journal is the durable one: every worker re-inserts its
journal (and that of any dead worker on this host) every few seconds with INSERT IGNORE on
the scan's uid, so a line already flushed from Redis is not written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.processes import pid_alive
from services.settings import get_settings

_fd: int | None = None
_path: Path | None = None


def _dir() -> Path:
    d = Path(get_settings().scan_journal_dir)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _mine() -> Path:
    return _dir() / f"{socket.gethostname()}-{os.getpid()}.log"


_opened_for: tuple[str, int] | None = None  # (journal dir setting, pid) _fd was opened for


def append(lines: list[str]) -> None:
    """Journal these scan-log lines before the scan is answered."""
    global _fd, _path, _opened_for
    if not lines:
        return
    # On the scan path: only a new file (first line, after a rotation, a fork or a changed
    # setting) costs the mkdir and the hostname; every other line is one write().
    key = (get_settings().scan_journal_dir, os.getpid())
    if _fd is None or _opened_for != key:
        path = _mine()
        if _fd is not None:
            os.close(_fd)
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _path, _opened_for = path, key
    os.write(_fd, "".join(line + "\n" for line in lines).encode())


async def replay(insert: Callable[[list[str]], Awaitable[None]], *,
                 min_age_seconds: float = 0) -> int:
    """Insert this worker's journal, and those of dead workers on this host, then drop them.
    Rotate first (rename, reopen on the next append), so a line written meanwhile goes to
    the next file. A failed insert keeps the rotated file for the next run."""
    global _fd, _path
    d = _dir()
    host = socket.gethostname()
    moved = 0
    for path in sorted(d.glob(f"{host}-*.log")):
        pid_text = path.stem.rsplit("-", 1)[-1]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            if path.stat().st_size == 0:
                continue
            rotated = path.with_suffix(f".{time.time_ns()}.replay")
            path.rename(rotated)
            if _fd is not None:
                os.close(_fd)
                _fd, _path = None, None
        elif not pid_alive(pid):
            rotated = path.with_suffix(f".{time.time_ns()}.replay")
            with contextlib.suppress(FileNotFoundError):
                path.rename(rotated)  # another worker may have taken it first
            if not rotated.exists():
                continue
        else:
            continue  # a live worker's: it replays its own
        moved += await _replay_file(rotated, insert)
    for rotated in sorted(d.glob(f"{host}-*.replay")):
        # Left by a failed run (or a worker that died mid-replay): its worker's or dead.
        pid = int(rotated.name[len(host) + 1:].split(".", 1)[0])
        if (pid == os.getpid() or not pid_alive(pid)) and (
                time.time() - rotated.stat().st_mtime >= min_age_seconds):
            moved += await _replay_file(rotated, insert)
    return moved


async def _replay_file(path: Path, insert: Callable[[list[str]], Awaitable[None]]) -> int:
    try:
        text = await asyncio.to_thread(path.read_text)
    except FileNotFoundError:
        return 0
    lines = [line for line in text.split("\n") if line]
    for i in range(0, len(lines), 500):
        await insert(lines[i:i + 500])
    await asyncio.to_thread(path.unlink, True)
    return len(lines)
