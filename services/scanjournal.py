"""A local write-ahead journal for scan-log lines, so a scan answered 200 keeps its log line
even if Redis restarts empty before the buffer is flushed (issue 16).

Why a local file and not the outbox table: a scan is one Redis round trip by design
(docs/codes.md); a database INSERT per scan would triple its cost. Appending a line to a file
is one ``write`` to the kernel: it survives the worker being killed and Redis losing its
memory, without depending on Redis' AOF settings. (It does not survive the machine losing
power before the kernel writes the page out — seconds; a power cut also takes the scans'
answers with it.) The Redis buffer stays the fast path that makes a scan visible in the
resident's list a second later; the journal is the durable one.

Who writes, who replays. A serving process appends to a *segment* of its own,
``<host>-<pid>-<start ns>.log``, and starts a new one every ``ROLL_SECONDS`` (checked when it
appends: one clock read). The replay runs wherever the job loop runs — in production the job
process (``manage.py jobs``), which serves no scans — and takes every segment on the host,
live writers' included, one replayer at a time (``flock``):

- it never renames or truncates a file a live writer may still hold: it *tails* it, keeping
  how far it has read in ``.progress.json`` beside the segments, and reads only whole lines;
- a segment is closed once a newer one of the same writer exists, or the writer is dead;
  a closed segment read to its end is deleted. (A replayer running in the writer's own
  process — ``make run``, tests — closes that writer's segment first, as nothing else can.)
- it waits ``settle_seconds`` before reading a line, long enough for the Redis flush (every
  2 s) to have stored it, and writes only lines whose uid the database doesn't hold yet
  (``write`` decides: one indexed read per batch). So in steady state the journal costs one
  read of each line and no INSERT; only lines Redis lost are written from here. Writing one
  twice is harmless anyway: ``INSERT IGNORE`` on the scan's uid.

Files of the release before this one (``<host>-<pid>.log`` and rotated ``*.replay``) are read
the same way: closed when their writer is gone (a ``.replay`` file always is).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from services.processes import pid_alive
from services.settings import get_settings

ROLL_SECONDS = 10.0
_PROGRESS = ".progress.json"
_LOCK = ".replay.lock"
_READ_BATCH = 500

_fd: int | None = None
_opened_for: tuple[str, int] | None = None  # (journal dir setting, pid) _fd was opened for
_path: Path | None = None
_roll_at = 0.0


def _dir() -> Path:
    d = Path(get_settings().scan_journal_dir)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _close() -> None:
    global _fd, _path, _opened_for
    if _fd is not None:
        os.close(_fd)
    _fd, _path, _opened_for = None, None, None


def append(lines: list[str]) -> None:
    """Journal these scan-log lines before the scan is answered."""
    global _fd, _path, _opened_for, _roll_at
    if not lines:
        return
    # On the scan path: only a new segment (first line, every ROLL_SECONDS, after a fork or a
    # changed setting) costs the mkdir and the hostname; every other line is one write().
    key = (get_settings().scan_journal_dir, os.getpid())
    now = time.monotonic()
    if _fd is None or now >= _roll_at or _opened_for != key:
        _close()
        path = _dir() / f"{socket.gethostname()}-{key[1]}-{time.time_ns()}.log"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _path, _opened_for, _roll_at = path, key, now + ROLL_SECONDS
    os.write(_fd, "".join(line + "\n" for line in lines).encode())


@dataclass(frozen=True)
class _Segment:
    path: Path
    pid: int
    started: int  # ns; 0 for the older release's files
    rotated: bool  # an older release's ``.replay`` file: closed by construction


def _segments(d: Path, host: str) -> list[_Segment]:
    out = []
    for path in d.iterdir():
        name = path.name
        if not name.startswith(host + "-"):
            continue
        rest = name[len(host) + 1:]
        if rest.endswith(".log"):
            pid_text, _, started = rest[:-4].partition("-")
            rotated = False
        elif rest.endswith(".replay"):
            pid_text, _, started = rest[:-7].partition(".")
            rotated = True
        else:
            continue
        if pid_text.isdigit() and (not started or started.isdigit()):
            out.append(_Segment(path, int(pid_text), int(started or 0), rotated))
    return sorted(out, key=lambda s: (s.pid, s.started, s.path.name))


def _closed(seg: _Segment, newest: dict[int, int]) -> bool:
    if seg.rotated or newest[seg.pid] > seg.started:
        return True
    if seg.pid == os.getpid():
        # This process's own segment: nothing else writes it, so closing it here is safe.
        if _path == seg.path:
            _close()
        return True
    return not pid_alive(seg.pid)


def _read_lines(path: Path, start: int, end: int) -> tuple[list[str], int]:
    """The whole lines in [start, end) and the offset after the last of them."""
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    cut = data.rfind(b"\n") + 1
    return [line for line in data[:cut].decode().split("\n") if line], start + cut


async def replay(write: Callable[[list[str]], Awaitable[int]], *,
                 settle_seconds: float = 0.0) -> int:
    """Hand every line of this host's segments to ``write`` once it is ``settle_seconds``
    old; drop closed segments read to their end. Returns what ``write`` reported written.
    Another replayer busy on this host: returns 0 at once (it covers the same files)."""
    d = _dir()
    with (d / _LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        return await _replay_locked(d, write, settle_seconds)


def _observations(entry: dict[str, object]) -> list[tuple[float, int]]:
    raw = entry.get("seen", [])
    return [(float(t), int(n)) for t, n in raw] if isinstance(raw, list) else []


async def _replay_locked(d: Path, write: Callable[[list[str]], Awaitable[int]],
                         settle_seconds: float) -> int:
    host = socket.gethostname()
    progress_file = d / _PROGRESS
    try:
        progress: dict[str, dict[str, object]] = json.loads(progress_file.read_text())
    except (FileNotFoundError, ValueError):
        progress = {}
    segments = _segments(d, host)
    newest: dict[int, int] = {}
    for seg in segments:
        newest[seg.pid] = max(newest.get(seg.pid, 0), 0 if seg.rotated else seg.started)
    now = time.time()
    written = 0
    # What a failed write leaves unread is read again next time (from its last offset).
    kept = {seg.path.name: progress[seg.path.name] for seg in segments
            if seg.path.name in progress}
    try:
        for seg in segments:
            closed = _closed(seg, newest)  # decided before the size is read
            try:
                size = seg.path.stat().st_size
            except FileNotFoundError:
                kept.pop(seg.path.name, None)
                continue
            entry = progress.get(seg.path.name, {})
            done = int(str(entry.get("done", 0)))
            # Sizes seen, with when: a line is read once a size that includes it was seen
            # settle_seconds ago (by any replayer: the file outlives this process).
            seen = [*_observations(entry), (now, size)]
            limit = max([n for t, n in seen if now - t >= settle_seconds], default=done)
            while done < limit:
                lines, after = await asyncio.to_thread(
                    _read_lines, seg.path, done, min(limit, done + _READ_BATCH * 512))
                if after == done:
                    break  # a line still being written (or longer than a read): next time
                for i in range(0, len(lines), _READ_BATCH):
                    written += await write(lines[i:i + _READ_BATCH])
                done = after
                kept[seg.path.name] = {"done": done, "seen": []}
            if closed and done >= size:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(seg.path.unlink)
                kept.pop(seg.path.name, None)
                continue
            # Keep the sizes still ripening, and the ripe one not fully read yet.
            kept[seg.path.name] = {"done": done, "seen": [
                [t, n] for t, n in seen
                if n > done and (now - t < settle_seconds or n == limit)]}
    finally:
        tmp = progress_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(kept))
        tmp.replace(progress_file)
    return written
