"""Structured JSON logs on standard error, one event per line, with the request id."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
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
        # One look-up of g instead of two ("in", then the attribute): every request logs.
        request_id = g.get("request_id") if has_request_context() else None
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes control characters, so a CR/LF in user input cannot forge a
        # second log line (LOG-03).
        return _ENCODER.encode(entry)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The servers' handler: JSON lines on standard error, request lines in batches.

    One line per request is required, but writing each with its own system call cost more
    than the rest of logging together: the worker thread gives up the GIL for the write and
    then waits to get it back from the others. So the lines of ``identity.request`` at INFO
    wait in memory and go out together, in writes of whole lines of at most ``PIPE_BUF``
    bytes (a pipe never interleaves such a write with another process's): when that much
    has gathered, when the oldest has waited ``FLUSH_INTERVAL`` seconds, before any other
    line (so the order is kept; warnings and audit events are never held back), and when
    the process exits. A process killed with SIGKILL loses at most that last half second of
    request lines.
    """

    FLUSH_INTERVAL = 0.5
    BATCH_BYTES = 4096  # PIPE_BUF on Linux: the largest write a pipe keeps in one piece

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._held_bytes = 0
        self._oldest = 0.0
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle() calls this with self.lock held.
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging must never raise into the app
            self.handleError(record)
            return
        if record.name == "identity.request" and record.levelno <= logging.INFO:
            size = len(line.encode())
            if self._held_bytes + size > self.BATCH_BYTES:
                self._write_held()
            if not self._held:
                self._oldest = time.monotonic()
                self._start_flusher()
            self._held.append(line)
            self._held_bytes += size
            if time.monotonic() - self._oldest < self.FLUSH_INTERVAL:
                return
            self._write_held()
        else:
            self._write_held()
            self._write(line)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held()
            super().flush()

    def _write_held(self) -> None:
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            self._held_bytes = 0
            self._write(text)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as StreamHandler: report if asked to, never raise
            if logging.raiseExceptions:
                with contextlib.suppress(Exception):
                    sys.__stderr__.write(  # type: ignore[union-attr]
                        "--- logging error: could not write log lines\n"
                    )

    def _start_flusher(self) -> None:
        """A thread per process (threads do not survive a fork) that writes held lines
        after FLUSH_INTERVAL when no further line comes to push them out, and a flush at
        exit: atexit covers the masters and gunicorn's workers (logging.shutdown), and
        granian's workers end through multiprocessing, which skips atexit."""
        pid = os.getpid()
        if self._flusher_pid == pid:
            return
        self._flusher_pid = pid
        threading.Thread(target=self._flush_periodically, daemon=True, name="log-flush").start()
        atexit.register(self.flush)
        if "multiprocessing" in sys.modules:
            from multiprocessing import util  # noqa: PLC0415 - only where already in use

            util.Finalize(None, self.flush, exitpriority=100)

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(self.FLUSH_INTERVAL)
            with self.lock:  # type: ignore[union-attr]
                if self._held and time.monotonic() - self._oldest >= self.FLUSH_INTERVAL:
                    self._write_held()


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

    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    app.before_request(_start_timer)  # timed from the first hook on

    @app.after_request
    def _log_request(response: Response) -> Response:
        # The request object itself: one proxy look-up instead of five on every request.
        req = request._get_current_object()  # type: ignore[attr-defined]
        if req.path in ("/healthz", "/readyz"):
            return response
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        log.info(
            "request",
            extra={
                "method": req.method,
                # Never the query string, and for matched routes the pattern, not the path:
                # reset and verification links carry their token in the path (LOG-02).
                "path": req.url_rule.rule if req.url_rule else req.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response
