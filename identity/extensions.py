"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar, cast

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.orm import Session

from identity.errors import store_unavailable_response
from identity.models.base import Base
from identity.security import client_ip

# db.session is a scoped_session, a proxy to the current app context's session. Code that
# hands the session to a service passes db.session(): that Session itself, which is what the
# services' ``session: Session`` parameters are typed for.
db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
# Limits are keyed on the client address as the trusted-proxy setting resolves it.
limiter = Limiter(key_func=client_ip)


def lazy_session() -> Session:
    """The request's session, created only when first used: ``db.session`` itself, the
    scoped session that proxies every Session method, typed as the Session it stands for.
    For the hot paths that rarely need one (JWKS, discovery and client-credentials tokens
    read cached keys and policy, and a Session made and closed per request costs about
    25 µs of CPU, bench/cpu.py); everything else takes ``db.session()``."""
    return cast(Session, db.session)


View = TypeVar("View", bound=Callable[..., Any])


def limit(*limits: Any, **options: Any) -> Callable[[View], View]:
    """``limiter.limit`` for a view, which it also marks as limited (see ``init_limiter``).

    Every rate limit in identity is such a per-view limit; there are no application-wide,
    default or blueprint limits (one added must revisit ``init_limiter``)."""
    decorate = limiter.limit(*limits, **options)

    def apply(view: View) -> View:
        limited: Any = decorate(view)
        limited.rate_limited = True  # functools.wraps in outer decorators carries it out
        return limited  # type: ignore[no-any-return]

    return apply


def init_limiter(app: Flask) -> None:
    """``limiter.init_app(app)``, keeping of the hooks it adds to every request only the
    one per-view limits need, and only for the views that have one.

    Flask-Limiter hooks every request: before it, a search for application-wide, default
    and blueprint limits; after it, its rate-limit headers and conditional deductions; at
    teardown, a reset of its per-request state (which goes with the request anyway).
    identity has only per-view limits (``limit``), which the view's own decorator checks,
    so the search can only ever find nothing, at about 60 µs of CPU per request, a third
    of a JWKS request (bench/cpu.py, docs/performance.md). Through Flask's public hook
    registries, the before-request and teardown hooks init_app added are dropped, and its
    after-request hooks run for the views marked limited only, for answers below 500, and
    a limit store lost after the check answers 503 from them too. Adding an application-wide,
    default or blueprint limit means revisiting this (test_rate_limits covers the rest)."""
    before = list(app.before_request_funcs.get(None, ()))
    after = list(app.after_request_funcs.get(None, ()))
    teardown = list(app.teardown_request_funcs.get(None, ()))
    limiter.init_app(app)
    app.before_request_funcs[None] = before
    app.teardown_request_funcs[None] = teardown
    limited: list[frozenset[str]] = []  # filled at the first request, once views exist

    def for_limited_views(hook: Callable[[Response], Any]) -> Callable[[Response], Any]:
        def run(response: Response) -> Any:
            if not limited:
                views = app.view_functions.items()
                limited.append(frozenset(name for name, view in views if is_rate_limited(view)))
            if (
                request.endpoint not in limited[0]
                or response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR
            ):
                # A 5xx kept nothing (the unit of work rolled it back), so there is nothing
                # to count; and after the check's own 503 (the limit store is down) asking
                # the store again would only fail again, or wait out its socket timeout.
                return response
            try:
                return hook(response)
            except (RedisConnectionError, RedisTimeoutError) as error:
                # The store went away after the check let the request in, so what the view
                # did cannot be counted: fail closed as the check does (LOG-05), with the
                # same one warning line, not an exception for Flask to log twice.
                return store_unavailable_response(error)

        return run

    added = app.after_request_funcs.get(None, [])
    app.after_request_funcs[None] = [h if h in after else for_limited_views(h) for h in added]


def is_rate_limited(view: Any) -> bool:
    return bool(getattr(view, "rate_limited", False))
