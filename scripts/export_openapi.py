"""Write the OpenAPI document the service serves at /docs/openapi.json, without a server.

    .venv/bin/python scripts/export_openapi.py miniprogram_stub/ts/openapi.json

The app is built and started in-process (as the tests do) and asked for its document, so the
file is byte for byte what /docs serves, keys sorted so that a diff shows only real changes.
No database or Redis is opened: building the document needs neither.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import httpx

os.environ.setdefault("XQ_ENV", "test")
os.environ["XQ_DOCS_ENABLED"] = "true"
os.environ.setdefault("XQ_RUN_BACKGROUND_JOBS", "false")
os.environ.setdefault("XQ_LOG_REQUESTS", "false")


async def document() -> dict[str, object]:
    from sanic import Sanic

    from api.app import create_app

    Sanic.test_mode = True
    app = create_app(manage_resources=False, name="xiaoqing_openapi_export")
    app.asgi = True
    await app._startup()  # type: ignore[no-untyped-call]  # as tests/conftest.py starts it
    await app._server_event("init", "before")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://export") as client:
        resp = await client.get("/docs/openapi.json")
    resp.raise_for_status()
    spec: dict[str, object] = resp.json()
    return spec


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    logging.disable(logging.WARNING)  # startup chatter; the document is the only output
    spec = asyncio.run(document())
    text = json.dumps(spec, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    Path(sys.argv[1]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
