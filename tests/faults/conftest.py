"""Fault tests: real servers of our own (never the shared 3306/6379), frozen with SIGSTOP and
killed with SIGKILL. They run in CI (scripts/test.sh sets XQ_FAULT_TESTS=1) and are skipped
otherwise: they start processes and take about a minute."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENABLED = os.environ.get("XQ_FAULT_TESTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="fault tests: set XQ_FAULT_TESTS=1 (scripts/test.sh does)")
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass
class RedisServer:
    """A redis-server of this test's own, without persistence: a restart comes back empty."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@dataclass
class MariaDB:
    """A MariaDB of this test's own: a throwaway datadir on a free port."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql://root:@127.0.0.1:{self.port}"

    def install(self) -> None:
        subprocess.run(
            # --no-defaults: the machine's my.cnf (user, log paths) is not this server's.
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.root / 'data'}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.root / 'data'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'sock'}",
             f"--pid-file={self.root / 'pid'}", "--user=root", "--skip-grant-tables",
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
             "--skip-name-resolve", "--log-error=" + str(self.root / "err.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout=60)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.thaw()
        server.kill()


@pytest.fixture(scope="session")
def own_mariadb() -> Iterator[MariaDB]:
    if not ENABLED:
        pytest.skip("fault tests disabled")
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        pytest.skip("MariaDB server binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="xq-faults-mariadb-"))
    server = MariaDB(root=root)
    server.install()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.thaw()
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
