"""The steps ``create_app`` runs, in order."""

from __future__ import annotations

from typing import Any

from flask import Flask

from identity import paths
from identity.database import setup_database
from identity.errors import register_error_handlers
from identity.logs import configure_logging, setup_request_logging
from identity.runtime import Runtime
from identity.security import setup_proxy, setup_request_id, setup_security_headers
from identity.settings import Settings


def make_flask(settings: Settings) -> Flask:
    configure_logging(settings.log_level)
    app = Flask(
        "identity",
        template_folder=str(paths.templates_dir()),
        static_folder=str(paths.PACKAGE / "static"),
        instance_path=str(settings.instance_path.resolve()),
    )
    https = settings.issuer_is_https
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=min(settings.max_content_length, 512 * 1024),
        MAX_FORM_PARTS=200,
        # Flask's own signed cookie holds only the CSRF token and flash messages.
        SESSION_COOKIE_NAME="__Host-identity" if https else "identity",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        PREFERRED_URL_SCHEME="https" if https else "http",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the Flask session
        WTF_CSRF_SSL_STRICT=https,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_url,
        RATELIMIT_KEY_PREFIX=settings.ratelimit_key_prefix,
        RATELIMIT_ENABLED=settings.ratelimit_enabled,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 2, "socket_timeout": 2}
        if settings.ratelimit_storage_url.startswith("redis")
        else {},
    )
    return app


def setup_runtime(app: Flask, settings: Settings) -> None:
    rt = Runtime.build(settings)
    app.secret_key = rt.secret_key
    app.extensions["identity"] = rt
    rt.mailer.init_app(app)


def setup_extensions(app: Flask, settings: Settings) -> None:
    from identity.extensions import csrf, limiter

    setup_database(app, settings)
    csrf.init_app(app)
    limiter.init_app(app)
    register_error_handlers(app)


def setup_web_security(app: Flask, settings: Settings) -> None:
    from identity.sessions import setup_login_sessions

    setup_proxy(app, settings)
    setup_request_id(app)
    setup_request_logging(app)
    setup_login_sessions(app, settings)
    setup_security_headers(app, settings)


def setup_oauth(app: Flask, settings: Settings) -> None:
    from identity.oauth.server import build_server

    build_server(app, settings)


def setup_fast_paths(app: Flask) -> None:
    """Last step: drop per-request work that the finished app turns out not to need."""
    from identity.extensions import drop_idle_rate_limit_check, skip_limiter_hooks_without_state

    drop_idle_rate_limit_check(app)
    skip_limiter_hooks_without_state(app)


def setup_blueprints(app: Flask) -> None:
    from identity import health
    from identity.accounts.views import bp as accounts_bp
    from identity.oauth import (
        account_views,
        api_views,
        device_views,
        oidc_views,
        registration,
        views,
    )

    app.register_blueprint(health.bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(api_views.bp)
    app.register_blueprint(oidc_views.bp)
    app.register_blueprint(device_views.bp)
    app.register_blueprint(registration.bp)
    app.register_blueprint(account_views.bp)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        from identity.runtime import runtime
        from identity.sessions import current_user

        return {"current_user": current_user(), "registration": runtime().settings.registration}
