"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

import functools

from flask import Flask, Response
from flask.globals import request_ctx
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


def skip_limiter_hooks_without_state(app: Flask) -> None:
    """Run Flask-Limiter's after-request and teardown hooks only for requests it took part in.

    Flask-Limiter keeps its per-request state on the request context, created the first
    time anything asks for it: a limited view's decorator does. On any other request its
    after-request hook created that state only to find no limit and no deduction in it
    (so it added no header), and its teardown created it to reset it. Such requests now
    skip both; requests with state run them unchanged. A Flask-Limiter whose hooks or
    state look different keeps its hooks as they are.
    """
    inject = getattr(type(limiter), "_Limiter__inject_headers", None)
    release = getattr(limiter, "_Limiter__release_context", None)
    after = app.after_request_funcs.get(None, [])
    teardown = app.teardown_request_funcs.get(None, [])
    hooks = [f for f in after if isinstance(f, functools.partial) and f.func is inject]
    if inject is None or len(hooks) != 1 or release is None or release not in teardown:
        return
    inject_headers = hooks[0]

    def limiter_took_part() -> bool:
        return hasattr(request_ctx, "_limiter_request_context")

    def _inject_headers(response: Response) -> Response:
        return inject_headers(response) if limiter_took_part() else response

    def _release_context(exc: BaseException | None = None) -> None:
        if limiter_took_part():
            release(exc)

    app.after_request_funcs[None] = [_inject_headers if f is inject_headers else f for f in after]
    app.teardown_request_funcs[None] = [_release_context if f == release else f for f in teardown]
