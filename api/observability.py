"""JSON logs with a request id that is also returned in ``X-Request-Id``."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("xq.access")


class JsonFormatter(logging.Formatter):
    _skip = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    for name in ("xq", "services", "api"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False


def install(app: Sanic, *, log_requests: bool) -> None:  # type: ignore[type-arg]
    @app.middleware("request", priority=100)
    async def assign_request_id(request: Request) -> None:
        # Honour a caller's id (a gateway's trace) when it looks sane; otherwise mint one.
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request.ctx.request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        request.ctx.started = time.perf_counter()

    @app.middleware("response", priority=100)
    async def stamp_and_log(request: Request, response: BaseHTTPResponse) -> None:
        rid = getattr(request.ctx, "request_id", None)
        if rid is None:
            return
        response.headers[REQUEST_ID_HEADER] = rid
        if log_requests:
            principal = getattr(request.ctx, "principal", None)
            access_log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "ms": round((time.perf_counter() - request.ctx.started) * 1000, 2),
                    "user_id": principal.user_id if principal else None,
                },
            )
