"""The actions on a user's page (/admin/users/<id>/...): each calls the service the admin
API calls, with the operator as the actor, and answers 303 back to the page with a flash.

A service's refusal (a user holding more than the operator, the last administrator, a
role already given) is flashed as an error; its savepoint undoes whatever it had begun,
since the request's unit of work commits after a 303.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import flash, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from identity.accounts import management
from identity.admin.console import back, check_sensitive, is_stale, operator, page
from identity.admin.user_pages import problem, show_user, user_or_404
from identity.api.privacy import bundle_download
from identity.api.sessions import end_sessions
from identity.api.users import UserUpdate, user_out
from identity.auth.service import Factors
from identity.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from identity.extensions import db
from identity.models.rbac import RoleAssignment
from identity.privacy import jobs
from identity.privacy.erasure import Erasure
from identity.rbac import service as rbac
from identity.rbac.permissions import ADMIN_ROLE, Permission
from identity.runtime import runtime

REFUSALS = (Forbidden, Conflict, InvalidInput, NotFound)
STALE = (
    "Someone changed this user after you opened the page: the form shows the current"
    " values now. Make your change again if it is still needed."
)


def attempt(user_id: uuid.UUID, action: Callable[[], str]) -> ResponseReturnValue:
    """Run a service call in a savepoint; flash what it returns, or its refusal."""
    try:
        with db.session().begin_nested():
            done = action()
    except REFUSALS as refused:
        flash(refused.message, "error")
    else:
        flash(done, "success")
    return back("admin.user", user_id=user_id)


def _rule(action: str) -> str:
    return f"/users/<uuid:user_id>/{action}"


@page(_rule("profile"), Permission.USERS_WRITE, methods=("POST",))
def user_profile(user_id: uuid.UUID) -> ResponseReturnValue:
    session = db.session()
    user = user_or_404(user_id, lock=True)
    if is_stale(request.form.get("version"), user_out(user)):
        return show_user(user, 409, profile_error=STALE)
    form = request.form
    submitted = {"name": form.get("name", ""), "email": form.get("email", "")}
    try:
        body = UserUpdate(
            name=form.get("name") or None,
            email=form.get("email") or None,
            email_verified=form.get("email_verified") == "on",
        )
    except ValidationError as invalid:
        return show_user(user, 422, profile_error=problem(invalid), profile=submitted)
    try:
        with session.begin_nested():
            changed = management.update_user(
                session,
                user,
                name=body.name,
                email=body.email,
                email_verified=body.email_verified,
                actor=operator().principal,
                client_id=None,
            )
    except Forbidden as refused:
        flash(refused.message, "error")
        return back("admin.user", user_id=user_id)
    except (Conflict, InvalidInput) as refused:  # the address is another account's
        return show_user(
            user, refused.status_code, profile_error=refused.message, profile=submitted
        )
    flash(f"Saved: {', '.join(changed)}." if changed else "Nothing changed.", "success")
    return back("admin.user", user_id=user_id)


def _set_disabled(user_id: uuid.UUID, disabled: bool) -> ResponseReturnValue:
    user = user_or_404(user_id, lock=True)

    def action() -> str:
        management.set_disabled(
            db.session(),
            user,
            disabled,
            access_token_lifetime=runtime().settings.access_token_lifetime,
            actor=operator().principal,
            client_id=None,
        )
        if disabled:
            return f"{user.email} is disabled: their sessions and tokens ended."
        return f"{user.email} is enabled: they may sign in again."

    return attempt(user_id, action)


@page(_rule("disable"), Permission.USERS_WRITE, methods=("POST",))
def user_disable(user_id: uuid.UUID) -> ResponseReturnValue:
    return _set_disabled(user_id, True)


@page(_rule("enable"), Permission.USERS_WRITE, methods=("POST",))
def user_enable(user_id: uuid.UUID) -> ResponseReturnValue:
    return _set_disabled(user_id, False)


@page(_rule("verification"), Permission.USERS_WRITE, methods=("POST",))
def user_verification(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id)

    def action() -> str:
        management.send_verification(db.session(), runtime(), user, actor=operator().principal)
        return f"A verification link is on its way to {user.email} (one a minute at most)."

    return attempt(user_id, action)


@page(_rule("password-reset"), Permission.USERS_WRITE, methods=("POST",))
def user_password_reset(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id)

    def action() -> str:
        management.send_password_reset(db.session(), runtime(), user, actor=operator().principal)
        return f"A password reset link is on its way to {user.email} (one a minute at most)."

    return attempt(user_id, action)


@page(_rule("factors/reset"), Permission.USERS_WRITE, methods=("POST",))
def user_factors_reset(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id, lock=True)

    def action() -> str:
        session = db.session()
        rbac.require_outranks(session, operator().principal, user.id)
        had = Factors(session, runtime()).reset(
            user, actor_id=rbac.actor_user(operator().principal), client_id=None
        )
        if had:
            return f"The second factors of {user.email} are removed; they were told by mail."
        return f"{user.email} had no second factor to remove."

    return attempt(user_id, action)


@page(_rule("sessions/revoke"), Permission.SESSIONS_REVOKE, methods=("POST",))
def user_sessions_revoke(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id)

    def action() -> str:
        # DELETE /api/v1/users/{id}/sessions: only who outranks the user may.
        ended = end_sessions(operator().caller, user.id, None)
        return f"{user.email} is signed out everywhere ({ended} sessions ended)."

    return attempt(user_id, action)


@page(_rule("export"), Permission.USERS_WRITE, methods=("POST",))
def user_export(user_id: uuid.UUID) -> ResponseReturnValue:
    """The signed ZIP of GET /api/v1/users/{id}/export, as a download."""
    user = user_or_404(user_id)
    try:
        data = jobs.export_for_operator(db.session(), runtime(), user, actor=operator().principal)
    except Forbidden as refused:
        flash(refused.message, "error")
        return back("admin.user", user_id=user_id)
    return bundle_download(user, data)


@page(_rule("erase"), Permission.USERS_WRITE, methods=("POST",))
def user_erase(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id, lock=True)
    email = user.email
    wrong = check_sensitive(request.form.get("reauth"), request.form.get("confirm"), email)
    if wrong:
        return show_user(user, 400, erase_error=wrong)
    try:
        with db.session().begin_nested():
            receipt = Erasure(db.session(), runtime()).erase(
                user,
                requested_by=operator().user.id,
                actor=operator().principal,
                client_id=None,
            )
    except REFUSALS as refused:
        flash(refused.message, "error")
        return back("admin.user", user_id=user_id)
    # No address in the message: flashes ride in the operator's cookie until shown.
    flash(f"The user is erased (receipt {receipt.receipt_id}).", "success")
    return back("admin.users")


@page(_rule("roles"), Permission.ROLES_ASSIGN, methods=("POST",))
def user_role_give(user_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id)
    name = (request.form.get("role") or "").strip()
    if name == ADMIN_ROLE:
        wrong = check_sensitive(request.form.get("reauth"), None, None)
        if wrong:
            return show_user(user, 400, admin_error=wrong)

    def action() -> str:
        session = db.session()
        role = rbac.role_by_name(session, name)
        rbac.assign(session, role, rbac.Principal("user", user.id), actor=operator().principal)
        return f"{user.email} now has the role {role.name}."

    return attempt(user_id, action)


@page(
    "/users/<uuid:user_id>/roles/<uuid:assignment_id>/remove",
    Permission.ROLES_ASSIGN,
    methods=("POST",),
)
def user_role_take(user_id: uuid.UUID, assignment_id: uuid.UUID) -> ResponseReturnValue:
    user = user_or_404(user_id)
    row = db.session().get(RoleAssignment, assignment_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"no assignment with id {assignment_id} for this user")

    def action() -> str:
        rbac.unassign(db.session(), row, actor=operator().principal)
        return f"The role is taken back from {user.email}."

    return attempt(user_id, action)
