"""Does /docs render, offline, in a real browser? CI's answer (a step of scripts/test.sh).

Starts the service (embedded default), opens /docs in Debian's headless Chromium with no
network but loopback, and checks that Swagger UI drew every operation of the document,
the tag descriptions, and no render error. A page that loads anything from another host
(a CDN, a font service) shows nothing here, as it would on the intranet.

No network: as root, the whole check re-runs itself in a new network namespace holding only
loopback (``unshare --net``). Without that (not root, no ``unshare``), Chromium's own flags
still send every name but 127.0.0.1 to NOTFOUND. Exit 0 when every operation was drawn.

    .venv/bin/python scripts/docs_browser_check.py [--keep-dom FILE]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
_ISOLATED = "XQ_DOCS_CHECK_ISOLATED"
# What Chromium needs to run headless as root in CI without phoning home.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Virtual time runs until the page is idle (the document fetched, the UI drawn), so the
    # DOM is dumped after the scripts ran, not at the load event.
    "--virtual-time-budget=30000",
]


def _isolate() -> int | None:
    """Re-run in a network namespace with only loopback; None when that isn't possible."""
    if os.environ.get(_ISOLATED) or os.geteuid() != 0:
        return None
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        return None
    inner = f"{ip} link set lo up && exec {shlex.join([sys.executable, *sys.argv])}"
    env = {**os.environ, _ISOLATED: "1"}
    return subprocess.call([unshare, "--net", "--", "sh", "-c", inner], env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("chromium is not installed (scripts/test.sh installs Debian's package)")


def database_url(workdir: Path) -> str:
    return f"sqlite://{workdir / 'check.sqlite3'}"


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """The service on the embedded default, on ``port``, its log in ``workdir``."""
    env = {
        **os.environ,
        "XQ_ENV": "development",
        "XQ_DOCS_ENABLED": "true",
        "XQ_DATABASE_URL": database_url(workdir),
        "XQ_REDIS_URL": "memory://",
        "XQ_RUN_BACKGROUND_JOBS": "false",
        "XQ_LOG_REQUESTS": "false",
    }
    cmd = [sys.executable, "-m", "sanic", "api.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--single-process"]
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before answering")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not answer /healthz in time")


def _dump_dom(url: str, workdir: Path) -> str:
    profile = workdir / "chromium-profile"
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"chromium exited with {done.returncode}:\n{tail}")
    return done.stdout.decode()


def check(dom: str, spec: dict[str, Any]) -> list[str]:
    """What is wrong with the drawn page, given the document it was drawn from."""
    problems = []
    page = html.unescape(dom)
    version = re.search(r'name="swagger-ui-version" content="(\d+)\.', dom)
    if not version or int(version.group(1)) < 5:
        problems.append("the page does not name Swagger UI 5 or later (3.1 needs it)")
    if "Unable to render this definition" in page or 'class="errors-wrapper"' in dom:
        problems.append("Swagger UI reports an error instead of the document")
    expected = Counter(path for path, item in spec["paths"].items()
                       for method in item if method != "parameters")
    drawn = Counter(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', page))
    missing = expected - drawn
    if missing:
        problems.append(f"{sum(missing.values())} of {sum(expected.values())} operations "
                        f"not drawn, e.g. {sorted(missing)[:5]}")
    for tag in spec.get("tags", []):
        if tag.get("description") and tag["description"] not in page:
            problems.append(f"tag {tag['name']!r} drawn without its description")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-dom", type=Path, help="write the drawn page here")
    args = parser.parse_args()

    isolated = _isolate()
    if isolated is not None:
        return isolated
    network = ("network namespace with loopback only" if os.environ.get(_ISOLATED)
               else "host network; Chromium resolves only 127.0.0.1")

    with tempfile.TemporaryDirectory(prefix="xq-docs-check-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(workdir, port)
        try:
            wait_up(base, server)
            spec = httpx.get(base + "/docs/openapi.json", timeout=10).json()
            started = time.monotonic()
            dom = _dump_dom(base + "/docs", workdir)
            seconds = time.monotonic() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep_dom:
            args.keep_dom.write_text(dom)

    problems = check(dom, spec)
    operations = sum(1 for item in spec["paths"].values() for m in item if m != "parameters")
    if problems:
        print(f"/docs check FAILED ({network}):")
        for problem in problems:
            print("  -", problem)
        return 1
    version = re.search(r'name="swagger-ui-version" content="([^"]+)"', dom)
    print(f"/docs drew all {operations} operations and {len(spec.get('tags', []))} tag "
          f"descriptions with Swagger UI {version.group(1) if version else '?'} in "
          f"headless Chromium in {seconds:.1f} s ({network})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
