"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from identity.models.base import Base
from identity.security import client_ip

db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
# Limits are keyed on the client address as the trusted-proxy setting resolves it.
limiter = Limiter(key_func=client_ip)


def drop_idle_rate_limit_check(app: Flask) -> None:
    """Remove Flask-Limiter's before-request check when it can never find a limit.

    Every limit here is a per-view ``@limiter.limit``, which its decorator checks when the
    view runs. The before-request check is for application, default, blueprint, meta and
    in-memory-fallback limits; with none of those configured it found nothing on every
    request, at about a fifth of the cost of a JWKS request. Any such limit (or a
    Flask-Limiter whose internals differ) keeps the check.
    """
    manager = limiter.limit_manager
    try:
        middleware_limits = (
            manager._application_limits,
            manager._default_limits,
            manager._blueprint_limits,
            limiter._meta_limits,
            limiter._in_memory_fallback,
        )
    except AttributeError:
        return
    if any(middleware_limits):
        return
    funcs = app.before_request_funcs.get(None, [])
    app.before_request_funcs[None] = [f for f in funcs if f != limiter._check_request_limit]
