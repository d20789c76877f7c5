"""Run the mini program's typed client against a live server (a step of scripts/ts_client.sh).

tsc proves the client agrees with the document; this compiles it to JavaScript and runs
``miniprogram_stub/ts/runtime/check.cjs`` under Node against the service on the embedded
default, with wx.request played by fetch, so the wrapper's behaviour is checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from docs_browser_check import ROOT, database_url, free_port, start_server, wait_up

TS = ROOT / "miniprogram_stub" / "ts"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="xq-ts-runtime-") as tmp:
        workdir = Path(tmp)
        compiled = workdir / "js"
        subprocess.run(
            ["npx", "--no-install", "tsc", "-p", "tsconfig.json", "--noEmit", "false",
             "--outDir", str(compiled), "--module", "commonjs", "--moduleResolution", "node10"],
            cwd=TS, check=True,
        )
        env = {**os.environ, "XQ_DATABASE_URL": database_url(workdir),
               "XQ_SCAN_JOURNAL_DIR": str(Path(workdir) / "scanlog")}
        subprocess.run([sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(workdir, port)
        try:
            wait_up(base, server)
            rc = subprocess.call(["node", "runtime/check.cjs", str(compiled), base], cwd=TS)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if rc != 0:
            print((workdir / "server.log").read_text(errors="replace")[-4000:])
        return rc


if __name__ == "__main__":
    sys.exit(main())
