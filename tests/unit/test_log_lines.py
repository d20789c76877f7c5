"""An error is one JSON line with the request id and the traceback as a field, even under the
``sanic`` command, which loads tracerite's multi-line exception printer into logging."""

from __future__ import annotations

import io
import json
import logging

import tracerite.hooks

from api.observability import JsonFormatter, JsonLineHandler


def test_error_log_is_one_json_line_even_with_tracerite_loaded() -> None:
    stream = io.StringIO()
    handler = JsonLineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("xq.test_one_line")
    logger.handlers, logger.propagate = [handler], False
    plain = logging.StreamHandler(io.StringIO())
    plain.setFormatter(JsonFormatter())
    tracerite.hooks.load_logging_capture()
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("unhandled error", extra={"request_id": "r-123"})
            logging.getLogger("xq.test_plain").handlers = [plain]
            logging.getLogger("xq.test_plain").propagate = False
            logging.getLogger("xq.test_plain").exception("unhandled error")
    finally:
        tracerite.hooks.unload_logging_capture()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["request_id"] == "r-123" and "RuntimeError: boom" in event["exc"]
    # What a plain StreamHandler does under tracerite (why the subclass exists):
    assert len(plain.stream.getvalue().splitlines()) > 1
