"""Production serving: granian (default) or gunicorn (``identity serve --server``).

Both run the app in ``workers`` processes forked from a master that holds no database
connection; each worker builds its own app after the fork (no preload), so no connection or
thread crosses a fork. SIGTERM stops accepting new connections and lets in-flight requests
finish within ``GRACEFUL_TIMEOUT`` seconds; the master then logs ``server.stopped`` and exits
0. Every log line, the servers' own included, is JSON on standard error.

granian is the default because it answers about three times as many requests per second as
gunicorn's sync workers on the same cores (bench/, docs/performance.md): its HTTP parsing
and socket handling run in Rust, outside the GIL. A worker runs the WSGI app in
``GRANIAN_THREADS`` Python threads, so a request that waits on the database does not hold
the others up; that is below the default pool of ``IDENTITY_DATABASE_POOL_SIZE`` (5)
connections, so no thread ever waits for a connection.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from identity.settings import Settings

SERVERS = ("granian", "gunicorn")
GRACEFUL_TIMEOUT = 30
GRANIAN_THREADS = 4
MAX_HEADER_BYTES = 72 * 1024

WSGIApp = Callable[..., Any]
log = logging.getLogger("identity.server")


def log_config(level: str, server_loggers: dict[str, str]) -> dict[str, Any]:
    """logging.dictConfig for the master and the workers: JSON lines on standard error."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "identity.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                # Request lines in batches: see BatchingStreamHandler.
                "class": "identity.logs.BatchingStreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"level": logger_level, "handlers": ["stderr"], "propagate": False}
            for name, logger_level in server_loggers.items()
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


# gunicorn ------------------------------------------------------------------------------


def gunicorn_options(host: str, port: int, workers: int, level: str) -> dict[str, Any]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        "timeout": 30,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": 5,
        # X-Forwarded-* handling belongs to IDENTITY_TRUSTED_PROXIES alone.
        "forwarded_allow_ips": "",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        "accesslog": None,
        "proc_name": "identity",
        # gunicorn 25+ opens a control socket at one per-user path ($XDG_RUNTIME_DIR or
        # ~/.gunicorn/gunicorn.ctl): a second instance on the host takes it over, and it lets
        # any process of that user resize or stop the server. Nothing here uses it.
        "control_socket_disable": True,
        "logconfig_dict": log_config(
            level, {"gunicorn.error": level, "gunicorn.access": "WARNING"}
        ),
    }


def _serve_gunicorn(load: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class WSGIServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                # Settings newer than the oldest supported gunicorn are skipped where unknown.
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> WSGIApp:
            return load()

    WSGIServer().run()


# granian -------------------------------------------------------------------------------


def granian_options(
    host: str, port: int, workers: int, level: str, threads: int = GRANIAN_THREADS
) -> dict[str, Any]:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return {
        "address": host,
        "port": port,
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": threads,
        "http": HTTPModes.http1,
        # hyper reads the request line and headers into a buffer capped here at 72 KiB
        # instead of 408 KiB (a larger header block: 431; a request line over 64 KiB: 414),
        # and gives them 30 seconds.
        "http1_settings": HTTP1Settings(
            header_read_timeout=30_000, keep_alive=True, max_buffer_size=MAX_HEADER_BYTES
        ),
        "log_level": LogLevels(level.lower()),
        "log_dictconfig": log_config(level, {"_granian": level, "granian.access": "WARNING"}),
        # identity.request logs one line per request; the access log would repeat it.
        "log_access": False,
        # A worker that dies is replaced, as gunicorn does.
        "respawn_failed_workers": True,
        "workers_kill_timeout": GRACEFUL_TIMEOUT,
    }


def _serve_granian(load: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
    from granian.server import Server

    server = Server("identity", **options)
    # Workers are forked; each calls ``load`` and serves what it returns.
    server.serve(target_loader=lambda *_: load(), wrap_loader=False)


# Both ----------------------------------------------------------------------------------


def default_server() -> str:
    """granian, or gunicorn (with a warning) where granian is not installed."""
    try:
        import granian  # noqa: F401
    except ImportError:
        log.warning(
            "granian is not installed; serving with gunicorn (pip install granian)",
            extra={"event": "server.fallback"},
        )
        return "gunicorn"
    return "granian"


def serve_wsgi(
    load: Callable[[], WSGIApp],
    *,
    server: str = "granian",
    host: str,
    port: int,
    workers: int,
    log_level: str = "INFO",
    threads: int = GRANIAN_THREADS,
) -> None:
    """Serve the app ``load()`` returns in each worker until SIGTERM (or SIGINT)."""
    if server not in SERVERS:
        raise ValueError(f"unknown server: {server}")
    master = os.getpid()
    code: Any = 0
    try:
        if server == "granian":
            _serve_granian(load, granian_options(host, port, workers, log_level, threads))
        else:
            _serve_gunicorn(load, gunicorn_options(host, port, workers, log_level))
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        # gunicorn's forked workers leave through this frame too; only the master reports.
        if os.getpid() == master:
            # The server has stopped; what is left is the interpreter's exit. A second
            # SIGTERM now (a process manager, an impatient operator) would kill it with the
            # default action, and turn a clean stop into "killed by signal 15".
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            log.info(
                "server stopped",
                extra={"event": "server.stopped", "server": server, "exit_code": code or 0},
            )


def run(settings: Settings, *, host: str, port: int, workers: int, server: str = "granian") -> None:
    def load() -> WSGIApp:
        from identity import create_app
        from identity.maintenance import start_janitor_for, start_mail_sweeper_for

        app = create_app(settings)
        start_janitor_for(app)  # in each worker: expired rows go every purge_interval
        start_mail_sweeper_for(app)  # and mail retries, or left behind by a dead process
        return app

    serve_wsgi(
        load, server=server, host=host, port=port, workers=workers, log_level=settings.log_level
    )
