"""Standalone HTTP face of FakeWeChatPlatform: ``python -m miniprogram_stub.server --port 9100``.

Point the backend's WeChat base URL at ``http://127.0.0.1:9100/``. Every path
the platform knows is served as-is; ``/_stub/*`` lets tests and humans inspect
and steer it. Records live in this process only and vanish on restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass

from sanic import Request, Sanic
from sanic.config import Config
from sanic.response import HTTPResponse, raw
from sanic.response import json as json_response
from sanic_ext.extensions.openapi import openapi

from miniprogram_stub.platform import FakeWeChatPlatform

APP_NAME = "wechat_stub"


@dataclass
class StubContext:
    platform: FakeWeChatPlatform


StubApp = Sanic[Config, StubContext]


FACE_STEP_PATH = "/_stub/face/verify"


def mount_face_step(app: Sanic, platform: FakeWeChatPlatform) -> None:  # type: ignore[type-arg]
    """Serve the phone's side of ``wx.requestFacialVerify`` from an app that holds the platform
    in-process (the backend in stub mode), at the same path the standalone stub serves it.
    Body ``{"verify_id", "result": "face" | "cancel" | "timeout" | ..., "face": ID number}``
    (see FakeWeChatPlatform.face_verify)."""

    # Not part of our API (a stand-in for what the phone does with WeChat): kept out of /docs.
    @app.post(FACE_STEP_PATH, name="stub_face_verify")
    @openapi.exclude()
    async def stub_face_verify(request: Request) -> HTTPResponse:
        status, headers, body = await asyncio.to_thread(
            platform.handle, "POST", FACE_STEP_PATH, {}, request.body)
        return raw(body, status=status, content_type=headers["Content-Type"])


def create_stub_app(platform: FakeWeChatPlatform | None = None, name: str = APP_NAME) -> StubApp:
    """Build the stub app; ``app.ctx.platform`` is the platform it serves.

    Sanic app names are process-unique outside its test mode, hence ``name``.
    """
    fake = platform if platform is not None else FakeWeChatPlatform()
    app: StubApp = Sanic(name, ctx=StubContext(platform=fake))
    # sanic-ext would add /docs and friends; the fake host should expose WeChat paths only.
    app.config.AUTO_EXTEND = False

    @app.get("/_stub/sent")
    async def stub_sent(_request: Request) -> HTTPResponse:
        return json_response(fake.snapshot(), ensure_ascii=False)

    @app.post("/_stub/reset")
    async def stub_reset(_request: Request) -> HTTPResponse:
        fake.reset()
        return json_response({"ok": True})

    @app.post("/_stub/refuse")
    async def stub_refuse(request: Request) -> HTTPResponse:
        try:
            payload = json.loads(request.body or b"null")
        except ValueError:
            payload = None
        openid = payload.get("openid") if isinstance(payload, dict) else None
        if not isinstance(openid, str) or not openid:
            return json_response(
                {"ok": False, "error": 'body must be {"openid": "<openid>"}'}, status=400
            )
        fake.refuse(openid)
        return json_response({"ok": True, "openid": openid})

    # Catch-all so unknown WeChat paths get the platform's own 404 body, like the real host.
    @app.route("/<path:path>", methods=["GET", "POST"])
    async def wechat_api(request: Request, path: str) -> HTTPResponse:
        # Blank values matter: js_code= must reach the platform as "" (40029), not vanish.
        query = dict(request.get_query_args(keep_blank_values=True))
        # QR rendering is CPU work and the platform lock may be contended; keep the loop free.
        status, headers, body = await asyncio.to_thread(
            fake.handle, request.method, request.path, query, request.body
        )
        content_type = headers.pop("Content-Type", "application/octet-stream")
        return raw(body, status=status, headers=headers, content_type=content_type)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake api.weixin.qq.com for local runs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--appid", default=None, help="reject other appids with 40013")
    parser.add_argument("--secret", default=None, help="reject other secrets with 40125")
    parser.add_argument("--unionid", action="store_true", help="include unionid in jscode2session")
    args = parser.parse_args(argv)

    platform = FakeWeChatPlatform(args.appid, args.secret, with_unionid=args.unionid)
    app = create_stub_app(platform)
    # One process: the recordings are in-memory and must not be split across workers.
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
