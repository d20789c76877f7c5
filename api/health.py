"""Liveness and readiness probes for the load balancer."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Component, Response
from tortoise import connections

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
                    response=[Response({"application/json": Component(Health)}, status=200)])
async def healthz(_request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/readyz")
@openapi.definition(
    summary="依赖就绪（数据库与 Redis）",
    tag="ops",
    response=[
        Response({"application/json": Component(Ready)}, status=200),
        Response({"application/json": Component(Ready)}, status=503),
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
