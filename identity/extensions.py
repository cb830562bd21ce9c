"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

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
    """``limiter.limit`` for a view, which it also marks as limited (see ``_unlimited``).

    Every rate limit in identity is such a per-view limit; there are no application-wide,
    default or blueprint limits (one added must revisit ``_unlimited``)."""
    decorate = limiter.limit(*limits, **options)

    def apply(view: View) -> View:
        limited: Any = decorate(view)
        limited.rate_limited = True  # functools.wraps in outer decorators carries it out
        return limited  # type: ignore[no-any-return]

    return apply


def init_limiter(app: Flask) -> None:
    """``limiter.init_app(app)``, with the hooks it adds run only for limited views.

    Flask-Limiter hooks every request (a before-request search for application limits, an
    after-request for its headers, a teardown), about 60 µs of CPU per request that finds
    nothing for the views without a limit, a third of a JWKS request (bench/cpu.py,
    docs/performance.md). identity has no application-wide, default or blueprint limits,
    only per-view ones (``limit``), so the hooks init_app registered are wrapped, through
    Flask's public hook registries and without knowing what they are, to run for the
    views marked limited and to do nothing for the others."""
    registries: list[dict[Any, list[Any]]] = [
        app.before_request_funcs,  # type: ignore[list-item]
        app.after_request_funcs,  # type: ignore[list-item]
        app.teardown_request_funcs,  # type: ignore[list-item]
    ]
    existing = [list(registry.get(None, ())) for registry in registries]
    limiter.init_app(app)
    limited: list[frozenset[str]] = []  # filled at the first request, once views exist

    def applies() -> bool:
        if not limited:
            views = app.view_functions.items()
            limited.append(frozenset(name for name, view in views if is_rate_limited(view)))
        return request.endpoint in limited[0]

    def before(hook: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: hook() if applies() else None

    def after(hook: Callable[[Response], Response]) -> Callable[[Response], Response]:
        return lambda response: hook(response) if applies() else response

    def teardown(hook: Callable[[BaseException | None], Any]) -> Callable[..., None]:
        def run(error: BaseException | None = None) -> None:
            if applies():
                hook(error)

        return run

    wrappers: list[Callable[[Any], Any]] = [before, after, teardown]
    for registry, had, wrap in zip(registries, existing, wrappers, strict=True):
        registry[None] = [hook if hook in had else wrap(hook) for hook in registry.get(None, ())]


def is_rate_limited(view: Any) -> bool:
    return bool(getattr(view, "rate_limited", False))
