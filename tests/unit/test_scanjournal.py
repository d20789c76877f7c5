"""The scan-log journal (services/scanjournal.py) as the job process sees it: other processes'
segments, live or dead, read without losing a line a live writer adds meanwhile; lines read
only once settled; closed segments dropped once read. The lines here are plain strings and
``write`` a list: what the lines mean is services/codes/scanlog.py's business."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import scanjournal
from services.settings import get_settings


@pytest.fixture
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(get_settings(), "scan_journal_dir", str(tmp_path))
    yield tmp_path
    scanjournal._close()


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process that is alive and is not us: stands for another serving worker."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, lines: list[str]) -> int:
        self.lines.extend(lines)
        return len(lines)


def _segment(d: Path, pid: int, started: int) -> Path:
    return d / f"{socket.gethostname()}-{pid}-{started}.log"


def _files(d: Path, pattern: str = "*.log") -> list[Path]:
    return list(d.glob(pattern))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _add(path: Path, *lines: str) -> None:
    # What scanjournal.append does in the writer's process: O_APPEND writes of whole lines.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, "".join(f"{line}\n" for line in lines).encode())
    finally:
        os.close(fd)


async def test_a_live_writers_segment_is_tailed_never_dropped_nor_reread(
        journal_dir: Path, live_pid: int) -> None:
    seg = _segment(journal_dir, live_pid, time.time_ns())
    _add(seg, "a", "b")
    sink = Sink()
    assert await scanjournal.replay(sink) == 2
    _add(seg, "c")  # the writer carries on in the same file
    with seg.open("ab") as f:
        f.write(b"half-writ")  # a line not finished yet is left for later
    assert await scanjournal.replay(sink) == 1
    assert sink.lines == ["a", "b", "c"] and seg.exists()
    with seg.open("ab") as f:
        f.write(b"ten\n")
    assert await scanjournal.replay(sink) == 1
    assert sink.lines[-1] == "half-written"
    # It rolls to a new segment: the old one is closed, read to its end and dropped.
    newer = _segment(journal_dir, live_pid, time.time_ns())
    _add(seg, "d")
    _add(newer, "e")
    assert await scanjournal.replay(sink) == 2
    assert sink.lines == ["a", "b", "c", "half-written", "d", "e"]
    assert not seg.exists() and newer.exists()


async def test_a_dead_writers_segments_are_read_and_dropped(journal_dir: Path) -> None:
    pid = _dead_pid()
    seg = _segment(journal_dir, pid, time.time_ns())
    _add(seg, "x", "y")
    legacy = journal_dir / f"{socket.gethostname()}-{pid}.123.replay"  # older release
    _add(legacy, "z")
    sink = Sink()
    assert await scanjournal.replay(sink) == 3
    assert sorted(sink.lines) == ["x", "y", "z"]
    assert _files(journal_dir) == [] and _files(journal_dir, "*.replay") == []


async def test_lines_wait_until_settled(journal_dir: Path, live_pid: int) -> None:
    seg = _segment(journal_dir, live_pid, time.time_ns())
    _add(seg, "early")
    sink = Sink()
    assert await scanjournal.replay(sink, settle_seconds=0.3) == 0  # just seen
    _add(seg, "late")
    await asyncio.sleep(0.35)
    # "early" was seen 0.35 s ago; "late" only now.
    assert await scanjournal.replay(sink, settle_seconds=0.3) == 1
    assert sink.lines == ["early"]
    await asyncio.sleep(0.35)
    assert await scanjournal.replay(sink, settle_seconds=0.3) == 1
    assert sink.lines == ["early", "late"]


async def test_a_failed_write_leaves_the_lines_for_the_next_run(
        journal_dir: Path, live_pid: int) -> None:
    seg = _segment(journal_dir, live_pid, time.time_ns())
    _add(seg, "p", "q")

    async def broken(lines: list[str]) -> int:
        raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        await scanjournal.replay(broken)
    sink = Sink()
    assert await scanjournal.replay(sink) == 2 and sink.lines == ["p", "q"]


async def test_own_segments_roll_and_one_replayer_at_a_time(
        journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanjournal, "ROLL_SECONDS", 0.0)  # every append a new segment
    scanjournal.append(["one"])
    await asyncio.sleep(0.001)
    scanjournal.append(["two"])
    assert len(_files(journal_dir)) == 2
    sink = Sink()
    with (journal_dir / ".replay.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another replayer on this host is busy
        assert await scanjournal.replay(sink) == 0
    assert await scanjournal.replay(sink) == 2 and sink.lines == ["one", "two"]
    assert _files(journal_dir) == []  # this process's own: closed here, dropped
    scanjournal.append(["three"])  # and the writer opens a new one
    assert await scanjournal.replay(sink) == 1 and sink.lines[-1] == "three"
