"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from identity.models.base import Base
from identity.security import client_ip

# db.session is a scoped_session, a proxy to the current app context's session. Code that
# hands the session to a service passes db.session(): that Session itself, which is what the
# services' ``session: Session`` parameters are typed for.
db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
# Limits are keyed on the client address as the trusted-proxy setting resolves it.
limiter = Limiter(key_func=client_ip)

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


@limiter.request_filter
def _unlimited() -> bool:
    """Exempt (True) a request whose view has no limit of its own.

    Flask-Limiter looks for application-wide limits before every request; with none
    configured that search finds nothing, at a third of the CPU of a JWKS request
    (bench/cpu.py, docs/performance.md). Its public request filter ends the search at
    once for the views without a limit, the hot machine endpoints among them."""
    view = current_app.view_functions.get(request.endpoint or "")
    return not getattr(view, "rate_limited", False)
