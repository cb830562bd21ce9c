"""Structured JSON logs on standard error, one event per line, with the request id."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

# Attributes every LogRecord has; anything else passed in ``extra`` becomes a JSON field.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# What json.dumps(entry, default=str, ensure_ascii=False) builds on every call, built once.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes control characters, so a CR/LF in user input cannot forge a
        # second log line (LOG-03).
        return _ENCODER.encode(entry)


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level)
    # Werkzeug's own request lines would duplicate ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Authlib logs every issued token ("Issue token {...}") and request details at DEBUG:
    # even IDENTITY_LOG_LEVEL=DEBUG must not put tokens in the logs (RFC 9700 4.3, BCP-47).
    logging.getLogger("authlib").setLevel(logging.INFO)


def setup_request_logging(app: Flask) -> None:
    log = logging.getLogger("identity.request")

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        if request.path in ("/healthz", "/readyz"):
            return response
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        log.info(
            "request",
            extra={
                "method": request.method,
                # Never the query string, and for matched routes the pattern, not the path:
                # reset and verification links carry their token in the path (LOG-02).
                "path": request.url_rule.rule if request.url_rule else request.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response
