"""Driving a server with ``wrk`` (C, not Python: the load generator must not cost more CPU per
request than the server under test) and reading what the server spent.

Get wrk: ``apt-get install -y wrk`` (Debian/Ubuntu), ``brew install wrk`` (macOS), or build
https://github.com/wg/wrk (``make``; one binary). The benches find it on ``PATH`` or through
``XQ_WRK``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


def wrk_binary() -> str:
    found = os.environ.get("XQ_WRK") or shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found: apt-get install -y wrk (or brew install wrk), "
                         "or set XQ_WRK to its path")
    return found


@dataclass
class WrkRun:
    requests: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    server_cpu: float = 0.0  # CPU seconds the server's processes spent during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu / max(1, self.requests) * 1e6


def _line(path: str, token: str, body: str) -> str:
    assert "\t" not in body and "\n" not in body
    return f"{path}\t{token}\t{body}\n"


def group_cpu(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (a Sanic server
    with workers is several processes), from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: process group
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _parse(out: str) -> tuple[int, float, float, float]:
    m = _TOTAL.search(out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(m.group(2)) * _UNIT[m.group(3)] / 1e3
    lat = {q: float(v) * _UNIT[u] for q, v, u in _LAT.findall(out)}
    return int(m.group(1)), seconds, lat.get("50", float("nan")), lat.get("99", float("nan"))


def run_list(port: int, requests: list[tuple[str, str, str]], *, connections: int,
             pgid: int, timeout_s: int = 120) -> WrkRun:
    """Send each (path, token, body) once over ``connections`` keep-alive connections; the
    run ends at the last answer. Statuses counted; 404s are the drain and not counted."""
    with tempfile.TemporaryDirectory(prefix="wrk_") as tmp:
        reqs, counts = Path(tmp) / "requests.tsv", Path(tmp) / "counts.txt"
        reqs.write_text("".join(_line(*r) for r in requests))
        cpu0 = group_cpu(pgid)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [wrk_binary(), "-t1", f"-c{connections}", f"-d{timeout_s}s", "--latency",
             "-s", str(HERE / "requests.lua"), f"http://127.0.0.1:{port}", "--",
             str(reqs), str(counts)],
            stdout=subprocess.PIPE, text=True)
        # The script writes the counts at the last answer; that moment ends the run.
        while not counts.exists() and proc.poll() is None:
            time.sleep(0.002)
        seconds = time.perf_counter() - t0
        cpu = group_cpu(pgid) - cpu0
        proc.send_signal(signal.SIGINT)  # wrk reports on SIGINT
        stdout, _ = proc.communicate(timeout=30)
        time.sleep(0.01)  # the file is written by then; read it whole
        statuses = {}
        if counts.exists():
            for ln in counts.read_text().split("\n"):
                if ln.strip():
                    s, n = ln.split()
                    statuses[int(s)] = int(n)
    _total, _wrk_seconds, p50, p99 = _parse(stdout)
    answered = sum(statuses.values())
    if answered != len(requests):
        raise RuntimeError(f"only {answered} of {len(requests)} answered:\n{stdout}")
    return WrkRun(answered, seconds, statuses, p50, p99, cpu)


def run_repeat(port: int, request: tuple[str, str, str], *, connections: int, seconds: float,
               pgid: int, threads: int = 1) -> WrkRun:
    """One request sent back to back for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="wrk_") as tmp:
        reqs = Path(tmp) / "requests.tsv"
        reqs.write_text(_line(*request))
        cpu0 = group_cpu(pgid)
        proc = subprocess.run(
            [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
             "-s", str(HERE / "repeat.lua"), f"http://127.0.0.1:{port}", "--", str(reqs)],
            capture_output=True, text=True, check=True)
        cpu = group_cpu(pgid) - cpu0
    total, secs, p50, p99 = _parse(proc.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout)
    statuses = {0: int(errors.group(1))} if errors else {}
    return WrkRun(total, secs, statuses, p50, p99, cpu)
