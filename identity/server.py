"""Production serving with gunicorn.

Each worker builds its own app (no preload), so no database connection or thread crosses a
fork. SIGTERM lets in-flight requests finish within ``graceful_timeout``.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from identity.settings import Settings


class IdentityServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            # Settings newer than the oldest supported gunicorn are skipped where unknown.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from identity import create_app

        return create_app(self.settings)


def gunicorn_options(host: str, port: int, workers: int, level: str) -> dict[str, Any]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        "timeout": 30,
        "graceful_timeout": 30,
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
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "identity.logs.JsonFormatter"}},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
            },
            "loggers": {
                "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
                "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            },
            "root": {"level": level, "handlers": ["stderr"]},
        },
    }


def run(settings: Settings, *, host: str, port: int, workers: int) -> None:
    IdentityServer(settings, gunicorn_options(host, port, workers, settings.log_level)).run()
