"""The console's frame: who may open a page, the second factor console users need, a fresh
proof and a typed confirmation before sensitive actions, and forms that went stale.

Every page is declared with ``@page(rule, permission)``. Its permission is decided by the
same RBAC engine, on the same principal, as the admin API's (identity.api.auth), and kept
on the view for tests/api/test_route_permissions.py. The layout links only the pages the
operator may open, and a page shows only the actions the operator may take; the services
behind the actions check again (an operator who holds ``roles:assign`` still cannot give a
role holding more than they hold).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from werkzeug.wrappers import Response as BaseResponse

from identity.admin.proofs import check_sensitive, guard_escalation
from identity.api.auth import Caller, decide
from identity.api.operations import etag_of
from identity.auth.methods import ACR_TWO_FACTORS, acr_for
from identity.exceptions import Forbidden
from identity.models.session import LoginSession
from identity.models.user import User
from identity.rbac.access import serves
from identity.rbac.permissions import Permission
from identity.rbac.service import Principal
from identity.runtime import runtime
from identity.sessions import current_user

bp = serves(
    Blueprint("admin", __name__, url_prefix="/admin"),
    "console",
    "operators; every page declares the RBAC permission it needs (identity.admin.console)",
)

# A page any console user may open: someone holding at least one of identity's permissions.
CONSOLE = "console"
__all__ = ["CONSOLE", "Operator", "bp", "check_sensitive", "operator", "page", "require"]


@dataclass
class Operator:
    """The signed-in console user of this request and what they may do."""

    user: User
    login_session: LoginSession
    caller: Caller
    _decided: dict[str, bool] = field(default_factory=dict)

    def can(self, permission: str) -> bool:
        if permission == CONSOLE:
            return self.is_console_user
        if permission not in self._decided:
            self._decided[permission] = decide(self.caller, permission).allowed
        return self._decided[permission]

    @property
    def is_console_user(self) -> bool:
        return any(self.can(p) for p in Permission)

    @property
    def principal(self) -> Principal:
        return self.caller.principal


def operator() -> Operator:
    """The operator of this request (set by ``@page``)."""
    return g.operator  # type: ignore[no-any-return]


def page(
    rule: str,
    permission: str,
    *,
    methods: Iterable[str] = ("GET",),
    endpoint: str | None = None,
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Register a console page that needs ``permission`` (a ``Permission`` or ``CONSOLE``).

    Not signed in: to the sign-in page and back. Signed in without a second factor while
    ``admin_mfa_required``: through the step-up, which sets one up when the user has none.
    Without the permission: 403, which says which permission is missing.
    """
    if permission != CONSOLE and permission not in set(Permission):
        raise ValueError(f"unknown permission {permission!r}")

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @functools.wraps(view)
        def guarded(**values: Any) -> ResponseReturnValue:
            user = current_user()
            here = request.full_path.rstrip("?")
            if user is None:
                return redirect(url_for("accounts.sign_in", next=here))
            who = Operator(user, g.login_session, Caller(Principal("user", user.id), "session"))
            if not who.is_console_user:
                raise Forbidden("The admin console is for operators: your account has no role.")
            if runtime().settings.admin_mfa_required and not _two_factors(who.login_session):
                # The step-up asks for the second factor, or sets one up first (required=1).
                return redirect(url_for("factors.step_up", next=here, required="1"))
            if not who.can(permission):
                error = Forbidden(f"This page needs the permission {permission}.")
                error.extra["missing"] = permission
                raise error
            g.operator = who
            if request.method == "POST":
                # Any action that would give someone every permission needs a fresh proof.
                return guard_escalation(lambda: view(**values))
            return view(**values)

        guarded.required_permission = permission  # type: ignore[attr-defined]
        bp.add_url_rule(rule, endpoint or view.__name__, guarded, methods=list(methods))
        return guarded

    return decorate


def _two_factors(login_session: LoginSession) -> bool:
    return acr_for(list(login_session.amr or [])) == ACR_TWO_FACTORS


def require(permission: str) -> None:
    """For an action on a page that needs more than the page itself (Forbidden otherwise)."""
    if not operator().can(permission):
        error = Forbidden(f"This action needs the permission {permission}.")
        error.extra["missing"] = permission
        raise error


# Stale forms (the admin API's ETag rule) --------------------------------------------------


def version_of(representation: BaseModel) -> str:
    """The version a form carries: the ETag the admin API gives the same resource."""
    return etag_of(representation.model_dump(mode="json"))


def is_stale(submitted: str | None, current: BaseModel) -> bool:
    """Whether the form was filled in on another version than the stored one: the change
    is refused (409) instead of overwriting someone else's, as If-Match does in the API."""
    return submitted != version_of(current)


# Answers ----------------------------------------------------------------------------------


def render(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(f"admin/{template}", **context), status


def back(endpoint: str, **values: Any) -> BaseResponse:
    """303 to a page after an action, never a replayable redirect."""
    return redirect(url_for(endpoint, **values), code=303)


# The console's navigation: (endpoint, label, permission). A page shows only the links its
# operator may open (and the pages that exist).
NAV: tuple[tuple[str, str, str], ...] = (
    ("admin.dashboard", "Dashboard", CONSOLE),
    ("admin.users", "Users", Permission.USERS_READ),
    ("admin.clients", "Clients", Permission.CLIENTS_READ),
    ("admin.roles", "Roles", Permission.ROLES_READ),
    ("admin.groups", "Groups", Permission.GROUPS_READ),
    ("admin.explorer", "Decisions", Permission.AUTHZ_CHECK),
    ("admin.sessions", "Sessions", Permission.SESSIONS_READ),
    ("admin.audit", "Audit log", Permission.AUDIT_READ),
    ("admin.keys", "Signing keys", Permission.KEYS_READ),
    ("admin.settings", "Settings", CONSOLE),
)


@bp.context_processor
def _console_context() -> dict[str, Any]:
    who: Operator | None = g.get("operator")
    nav = []
    if who is not None:
        nav = [
            (endpoint, label)
            for endpoint, label, permission in NAV
            if endpoint in current_app.view_functions and who.can(permission)
        ]
    return {"operator": who, "console_nav": nav}
