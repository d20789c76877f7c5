"""Liveness and readiness probes for the load balancer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Response

from api import workers
from api.endpoint import schema_component
from services import cache, db

bp = Blueprint("health")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database: bool
    redis: bool
    workers: bool
    down: list[str]


@bp.get("/healthz")
@openapi.definition(summary="进程存活", tag="ops",
                    response=[Response({"application/json": schema_component(Health)}, status=200,
                                       description="进程在运行")])
async def healthz(_request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/readyz")
@openapi.definition(
    summary="依赖就绪（数据库与 Redis）",
    tag="ops",
    response=[
        Response({"application/json": schema_component(Ready)}, status=200,
                 description="数据库与 Redis 均可用"),
        Response({"application/json": schema_component(Ready)}, status=503,
                 description="数据库或 Redis 不可用（看 database / redis 两项）"),
    ],
)
async def readyz(request: Request) -> HTTPResponse:
    # Both probes at once, each bounded: a frozen dependency makes the answer "down" within
    # PROBE_SECONDS instead of hanging the load balancer's probe.
    db_ok, redis_ok = await asyncio.gather(_bounded(db.ping()), _bounded(cache.ping()))
    workers_ok = workers.all_alive(request.app)
    checks = {"database": db_ok, "redis": redis_ok, "workers": workers_ok}
    down = [name for name, ok in checks.items() if not ok]
    return json({"status": "degraded" if down else "ok", **checks, "down": down},
                status=503 if down else 200)


PROBE_SECONDS = 2.0


async def _bounded(probe: Awaitable[bool]) -> bool:
    try:
        return await asyncio.wait_for(probe, PROBE_SECONDS)
    except Exception:
        return False

