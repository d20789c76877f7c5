"""The app factory: ``sanic api.app:create_app --factory``.

Each worker opens its own database pool and Redis client in ``app.ctx``-style module doors
(``services.db``, ``services.cache``) at start; nothing a request needs lives only in one
worker's memory, so any number of workers on any number of machines can serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from sanic import Sanic
from sanic.config import Config

from api import admin, auth, errors, health, me, observability, workers
from api import appointments as appointments_api
from api import approval as approval_api
from api import cases as cases_api
from api import codes as codes_api
from api import docs as docs_api
from api import feedback as feedback_api
from api import grids as grids_api
from api import guide as guide_api
from api import helpers as helpers_api
from api import identity as identity_api
from api import map as map_api
from api import messages as messages_api
from api import online as online_api
from api import org as org_api
from api import policies as policies_api
from api import ratings as ratings_api
from api import stats as stats_api
from api import window as window_api
from api.endpoint import TAG_DESCRIPTIONS
from services import cache, db, jobs
from services import wechat as wechat_service
from services.settings import Settings, SettingsError, get_settings

# One line per domain, so a new domain's line never collides with another's in a merge.
BLUEPRINTS = [
    health.bp, auth.bp, me.bp, admin.bp,
    guide_api.bp, guide_api.admin_bp,
    map_api.bp, map_api.admin_bp,
    policies_api.bp, policies_api.admin_bp,
    cases_api.bp, cases_api.admin_bp,
    helpers_api.bp, helpers_api.proxy_bp, helpers_api.admin_bp,
    codes_api.bp,
    feedback_api.bp, feedback_api.admin_bp,
    ratings_api.bp, ratings_api.admin_bp,
    stats_api.bp,
    appointments_api.bp,
    identity_api.bp, identity_api.admin_bp,
    messages_api.bp, messages_api.notices_bp, messages_api.admin_bp,
    org_api.bp, org_api.admin_bp,
    grids_api.bp,
    online_api.bp, online_api.admin_bp,
    window_api.bp,
    approval_api.bp, approval_api.ratings_bp,
]


def build_wechat(settings: Settings) -> tuple[wechat_service.WeChat, Any]:
    """The gateway, and the in-process fake platform behind it in stub mode (else None)."""
    adapter: Any = None
    platform: Any = None
    if settings.wechat_mode == "stub":
        # The composition root is the one place allowed to know the stand-in exists.
        from miniprogram_stub.platform import FakeWeChatPlatform
        from miniprogram_stub.transport import InProcessAdapter

        platform = FakeWeChatPlatform(appid=settings.wechat_appid)
        adapter = InProcessAdapter(platform)
    elif settings.wechat_api_base.rstrip("/") != wechat_service.WECHAT_BASE.rstrip("/"):
        adapter = wechat_service.RebaseAdapter(settings.wechat_api_base)
    gateway = wechat_service.WeChat(appid=settings.wechat_appid, secret=settings.wechat_secret,
                                    adapter=adapter)
    return gateway, platform


def create_app(
    _cli_args: object = None,
    *,
    settings: Settings | None = None,
    manage_resources: bool = True,
    name: str = "xiaoqing",
) -> Sanic:  # type: ignore[type-arg]
    """Sanic's CLI calls the factory with its parsed arguments, hence the ignored positional.
    ``manage_resources=False`` leaves opening the ORM and Redis to the caller (tests own them,
    so an in-process client restarting the app never reopens or wipes them)."""
    if settings is None:
        try:
            settings = get_settings()
        except SettingsError as exc:
            # SystemExit, not the error itself: Sanic's CLI logs a ValueError from the factory
            # and exits 0, so a supervisor would think the refused start went fine.
            raise SystemExit(f"小庆帮办 refused to start: {exc}") from None
    config = Config()
    config.FALLBACK_ERROR_FORMAT = "json"
    config.REQUEST_MAX_SIZE = 2 * 1024 * 1024
    config.OAS = settings.docs_on()
    config.OAS_URL_PREFIX = "/docs"
    # sanic-ext's own pages load their UI from a CDN: ours (Swagger UI 5 from a package, see
    # api/docs.py) is served from the slot that serves any HTML file and adds no other route.
    config.OAS_UI_SWAGGER = False
    config.OAS_UI_REDOC = True
    config.OAS_UI_DEFAULT = "redoc"
    config.OAS_PATH_TO_REDOC_HTML = str(docs_api.PAGE)
    config.OAS_URI_TO_REDOC = "/ui"
    config.OAS_UI_REDOC_VERSION = docs_api.SWAGGER_UI_VERSION
    config.OAS_AUTODOC = False
    config.CORS = False
    config.HEALTH = False
    # Trust forwarded client addresses only when configured (off by default): rate limits
    # bucket by request.client_ip, which a forged X-Forwarded-For must not choose.
    config.PROXIES_COUNT = settings.proxies_count or None
    config.REAL_IP_HEADER = settings.real_ip_header or None
    config.FORWARDED_SECRET = settings.forwarded_secret or None
    app: Sanic = Sanic(name, config=config)  # type: ignore[type-arg]
    app.ext.openapi.describe(
        "小庆帮办 API",
        version="1",
        description="庆阳市政务服务微信小程序后端。错误统一为 "
        '`{"error": {"code", "message", "fields"}}`；时间均为 Asia/Shanghai (+08:00)。',
    )
    app.ext.openapi.add_security_scheme("bearer", "http", scheme="bearer", bearer_format="JWT")
    for tag, description in TAG_DESCRIPTIONS.items():
        app.ext.openapi.tag(tag, description)

    # The one app-wide response middleware: each costs every request about a Redis GET.
    @app.middleware("response", priority=100)
    async def finish_response(request: Any, response: Any) -> None:
        observability.finish(request, response)
        if request.path == "/docs/openapi.json" and response.status == 200:
            # sanic-ext labels the document 3.0.3, but every schema in it comes from pydantic
            # v2, which writes JSON Schema 2020-12 (null types, numeric exclusive bounds): that
            # is OpenAPI 3.1, so say so, and validators read the schemas as what they are.
            spec = json.loads(response.body)
            spec["openapi"] = "3.1.0"
            response.body = json.dumps(spec, ensure_ascii=False).encode()

    observability.configure_logging()
    observability.install(app, log_requests=settings.log_requests)
    errors.install(app)
    for bp in BLUEPRINTS:
        app.blueprint(bp)
    if settings.docs_on():
        app.blueprint(docs_api.bp)

    gateway, app.ctx.fake_wechat = build_wechat(settings)
    wechat_service.configure(gateway)
    if app.ctx.fake_wechat is not None:
        # Stub mode only (refused in production): the phone's side of wx.requestFacialVerify,
        # which on a real phone talks to WeChat, not to us.
        from miniprogram_stub.server import mount_face_step

        mount_face_step(app, app.ctx.fake_wechat)

    if manage_resources:
        workers.install(app)

        @app.before_server_start
        async def open_resources(app: Sanic) -> None:  # type: ignore[type-arg]
            await db.open_db(settings)
            app.ctx.redis = await cache.open_cache(settings.redis_url)

        @app.after_server_start
        async def start_jobs(app: Sanic) -> None:  # type: ignore[type-arg]
            app.ctx.stop_jobs = asyncio.Event()
            app.ctx.jobs_task = None
            if settings.run_background_jobs:
                # Every module's jobs, not only those the blueprints happened to import.
                jobs.load_registrations()
                app.ctx.jobs_task = asyncio.create_task(jobs.worker_loop(app.ctx.stop_jobs))

        @app.before_server_stop
        async def close_resources(app: Sanic) -> None:  # type: ignore[type-arg]
            app.ctx.stop_jobs.set()
            if app.ctx.jobs_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(app.ctx.jobs_task, timeout=5)
            await cache.close_cache()
            await db.close_db()

    return app
