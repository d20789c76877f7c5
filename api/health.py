"""Liveness and readiness probes for the load balancer."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Response
from tortoise import connections

from api.endpoint import schema_component
from services import cache

bp = Blueprint("health")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database: bool
    redis: bool


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
async def readyz(_request: Request) -> HTTPResponse:
    db_ok = await _db_ok()
    redis_ok = await cache.ping()
    ok = db_ok and redis_ok
    return json({"status": "ok" if ok else "degraded", "database": db_ok, "redis": redis_ok},
                status=200 if ok else 503)


async def _db_ok() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True
