"""JSON logs with a request id that is also returned in ``X-Request-Id``."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from services import ids

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


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """``StreamHandler`` with its own ``emit``: the ``sanic`` command loads tracerite, which
    replaces ``logging.StreamHandler.emit`` to print exceptions as multi-line boxes after the
    line; a subclass's own method is not replaced, so an error stays one JSON line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    handler = JsonLineHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    # Sanic's own loggers and the ORM's too: an error anywhere is one JSON line (traceback as
    # the "exc" field), never a multi-line trace a log shipper splits into unrelated events.
    for name in ("xq", "services", "api", "sanic.root", "sanic.error", "sanic.server",
                 "sanic.websockets", "tortoise"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.WARNING if name == "tortoise" else level)
        logger.propagate = False


def request_id(request: Request) -> str:
    """This request's id: the caller's (a gateway's trace) when it looks sane, else a new one.
    Made on first use, so a request nobody logs costs no middleware to get one."""
    rid: str | None = getattr(request.ctx, "request_id", None)
    if rid is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _SAFE_ID.match(given) else ids.unique_hex()
        request.ctx.request_id = rid
    return rid


def install(app: Sanic, *, log_requests: bool) -> None:  # type: ignore[type-arg]
    """The request timer, when requests are logged. Stamping the id and the log line happen in
    ``finish``, which the app calls from its one response middleware: every app-wide middleware
    costs each request about as much as a Redis GET."""
    if log_requests:

        @app.middleware("request", priority=100)
        async def start_timer(request: Request) -> None:
            request.ctx.started = time.perf_counter()


def finish(request: Request, response: BaseHTTPResponse) -> None:
    rid = request_id(request)
    response.headers[REQUEST_ID_HEADER] = rid
    # Every response, errors and 404s included: a browser must never guess a JSON error or a
    # user-supplied string into HTML. One dict store, so the scan route doesn't notice it.
    response.headers["X-Content-Type-Options"] = "nosniff"
    started = getattr(request.ctx, "started", None)
    if started is not None:
        principal = getattr(request.ctx, "principal", None)
        access_log.info(
            "request",
            extra={
                "request_id": rid,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": principal.user_id if principal else None,
            },
        )
