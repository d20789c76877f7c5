"""Every failure leaves as ``{"error": {"code", "message", "fields"}}``; nothing leaks a trace."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sanic import Request, Sanic
from sanic.exceptions import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    SanicException,
)
from sanic.response import HTTPResponse, json
from tortoise.exceptions import ValidationError as OrmValidationError

from api.observability import request_id
from services import breaker, db
from services.errors import AppError, ErrorCode

log = logging.getLogger("xq.errors")


def _reply(request: Request | None, err: AppError) -> HTTPResponse:
    resp = json(err.body(), status=err.status, headers=err.headers)
    return resp


def dependency_down(exc: BaseException) -> str | None:
    """Which dependency ``exc`` says is unreachable ("redis", "database"), else None."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "redis"
    if db.is_outage(exc):
        return "database"
    return None


def to_app_error(exc: Exception) -> AppError:
    if isinstance(exc, AppError):
        return exc
    down = dependency_down(exc)
    if down is not None:
        # An outage is the server's problem but not a bug: a 503 the client may retry, with
        # the time the breaker will wait before trying the dependency again.
        return AppError(ErrorCode.unavailable,
                        headers={"Retry-After": str(breaker.by_name(down).retry_after())})
    if isinstance(exc, OrmValidationError):
        # A value the model refuses (too long, out of range) that a route's own checks let
        # through: still the caller's input, so a 422 rather than a 500.
        return AppError(ErrorCode.validation_failed)
    if isinstance(exc, NotFound):
        return AppError(ErrorCode.route_not_found)
    if isinstance(exc, MethodNotAllowed):
        # Keep Sanic's Allow header: HTTP requires it on a 405.
        return AppError(ErrorCode.method_not_allowed, headers=dict(exc.headers or {}))
    if isinstance(exc, PayloadTooLarge):
        return AppError(ErrorCode.payload_too_large)
    if isinstance(exc, BadRequest | RangeNotSatisfiable):
        return AppError(ErrorCode.bad_request)
    if isinstance(exc, SanicException) and 400 <= exc.status_code < 500:
        return AppError(ErrorCode.bad_request, str(exc) or None)
    if isinstance(exc, SanicException) and exc.status_code == 503:
        return AppError(ErrorCode.unavailable)
    return AppError(ErrorCode.internal_error)


def install(app: Sanic) -> None:  # type: ignore[type-arg]
    @app.exception(Exception)
    async def handle(request: Request, exc: Exception) -> HTTPResponse:
        err = to_app_error(exc)
        down = dependency_down(exc)
        if down is not None:
            # Expected during an outage, and one per request: a line, not a traceback.
            log.warning("dependency unavailable", extra={
                "request_id": request_id(request), "dependency": down,
                "path": request.path, "error": f"{type(exc).__name__}: {exc}"[:300]})
        elif isinstance(exc, AppError) and exc.status == 503:
            log.warning("unavailable", extra={"request_id": request_id(request),
                                                "path": request.path, "error": str(exc)})
        elif err.status >= 500:
            log.exception("unhandled error", exc_info=exc,
                          extra={"request_id": request_id(request), "path": request.path})
        return _reply(request, err)
