"""/admin/users: search users, create and invite them, and a user's page (its actions are
in identity.admin.user_actions).

The search is the admin API's (identity.api.users.search_users, same filters and cursor);
creating a user calls the management function POST /api/v1/users calls, an invitation
the one `identity invites create` calls.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy import select

from identity import audit
from identity.accounts import management
from identity.admin.console import (
    back,
    check_sensitive,
    operator,
    page,
    render,
    require,
    version_of,
)
from identity.api.users import UserCreate, UserQuery, get_user, search_users, user_out
from identity.auth.service import Factors
from identity.exceptions import IdentityError, InvalidInput, NotFound
from identity.extensions import db
from identity.models.rbac import Group, Role, RoleAssignment, group_members
from identity.models.user import User
from identity.oauth.consents.service import connected_apps
from identity.rbac.permissions import ADMIN_ROLE, Permission
from identity.runtime import runtime
from identity.sessions import policy
from identity.sessions import service as login_sessions

PAGE_SIZE = 50
# The list's "state" filter, as the API's query fields.
STATES: dict[str, dict[str, bool]] = {
    "active": {"disabled": False},
    "disabled": {"disabled": True},
    "unverified": {"verified": False},
}


def problem(error: ValidationError) -> str:
    """A pydantic error as one sentence for a form."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'form'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


def role_names() -> list[str]:
    return list(db.session().execute(select(Role.name).order_by(Role.name)).scalars())


# The list ----------------------------------------------------------------------------------


@page("/users", Permission.USERS_READ)
def users() -> ResponseReturnValue:
    args = request.args
    filters = {key: (args.get(key) or "").strip() for key in ("q", "role", "group", "state")}
    found, error = None, None
    try:
        fields: dict[str, Any] = {key: filters[key] or None for key in ("q", "role", "group")}
        fields.update(STATES.get(filters["state"], {}))
        query = UserQuery(cursor=args.get("cursor") or None, limit=PAGE_SIZE, **fields)
        found = search_users(db.session(), query)
    except ValidationError as invalid:
        error = problem(invalid)
    except (InvalidInput, NotFound) as refused:  # a bad cursor, an unknown role or group
        error = refused.message
    next_url = None
    if found is not None and found.next_cursor:
        kept: dict[str, Any] = {key: value for key, value in filters.items() if value}
        next_url = url_for("admin.users", cursor=found.next_cursor, **kept)
    return render(
        "users/list.html",
        400 if error else 200,
        users=found.items if found else [],
        filters=filters,
        error=error,
        next_url=next_url,
        roles=role_names(),
        states=list(STATES),
        searched=any(filters.values()),
    )


# Creating and inviting ---------------------------------------------------------------------


@page("/users/new", Permission.USERS_WRITE, methods=("GET", "POST"))
def users_create() -> ResponseReturnValue:
    if request.method == "GET":
        return render("users/new.html", form={})
    form = request.form
    try:
        body = UserCreate(
            email=form.get("email", ""),
            name=form.get("name") or None,
            password=form.get("password") or None,
            email_verified=form.get("email_verified") == "on",
        )
    except ValidationError as invalid:
        return render("users/new.html", 422, form=form, error=problem(invalid))
    session = db.session()
    try:
        with session.begin_nested():
            user = management.create_user(
                session,
                runtime(),
                body.email,
                body.password,
                verified=body.email_verified,
                name=body.name,
                actor=operator().principal,
                client_id=None,
            )
    except IdentityError as refused:  # the address is taken, the password too weak
        return render("users/new.html", refused.status_code, form=form, error=refused.message)
    if body.password is None:  # the service mailed a link to choose one
        flash(f"{user.email} was created and mailed a link to choose a password.", "success")
    else:
        flash(f"{user.email} was created.", "success")
    return back("admin.user", user_id=user.id)


@page("/users/invite", Permission.USERS_WRITE, methods=("GET", "POST"))
def users_invite() -> ResponseReturnValue:
    registration = runtime().settings.registration
    if request.method == "GET":
        return render("users/invite.html", form={}, roles=role_names(), registration=registration)
    form = request.form
    email = (form.get("email") or "").strip() or None
    role = (form.get("role") or "").strip() or None
    session = db.session()

    def again(status: int, error: str) -> ResponseReturnValue:
        return render(
            "users/invite.html",
            status,
            form=form,
            roles=role_names(),
            registration=registration,
            error=error,
        )

    if role is not None:
        # Giving a role through an invitation is giving a role: roles:assign here, and the
        # service refuses a role holding more than the operator holds.
        require(Permission.ROLES_ASSIGN)
        if role == ADMIN_ROLE:
            wrong = check_sensitive(form.get("reauth"), None, None)
            if wrong:
                return again(400, wrong)
    try:
        with session.begin_nested():
            link = management.create_invitation(
                session,
                runtime(),
                email=email,
                role=role,
                actor=operator().principal,
                send_mail=True,
            )
    except IdentityError as refused:  # a malformed address, a role beyond the operator's
        return again(refused.status_code, refused.message)
    # The link is shown once, on this answer (never in a flash message, which would keep it
    # in the session cookie), and mailed when the invitation names an address.
    response = make_response(
        render_template(
            "admin/users/invite.html",
            form={},
            roles=role_names(),
            registration=registration,
            created={"link": link, "email": email, "role": role},
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# A user's page -----------------------------------------------------------------------------


def user_or_404(user_id: uuid.UUID, *, lock: bool = False) -> User:
    return get_user(db.session(), user_id, lock=lock)


def show_user(user: User, status: int = 200, **context: Any) -> ResponseReturnValue:
    """The user's page; actions that fail re-render it with their error in ``context``."""
    session = db.session()
    who = operator()
    out = user_out(user)
    assignments = session.execute(
        select(RoleAssignment, Role.name)
        .join(Role, Role.id == RoleAssignment.role_id)
        .where(RoleAssignment.user_id == user.id, RoleAssignment.scope_client_pk.is_(None))
        .order_by(Role.name)
    ).all()
    groups = session.execute(
        select(Group.name)
        .join(group_members, group_members.c.group_id == Group.id)
        .where(group_members.c.user_id == user.id)
        .order_by(Group.name)
    ).scalars()
    held = {name for _, name in assignments}
    sessions = None
    if who.can(Permission.SESSIONS_READ):
        sessions = login_sessions.active_of(session, user.id, policy(runtime().settings))
    events = None
    if who.can(Permission.AUDIT_READ):
        events = audit.query(session, subject_id=user.id, limit=20)
    context.setdefault("profile", {"name": out.name or "", "email": out.email})
    return render(
        "users/detail.html",
        status,
        user=out,
        version=version_of(out),
        assignments=assignments,
        groups=list(groups),
        grantable=[name for name in role_names() if name not in held and name != ADMIN_ROLE],
        is_admin=ADMIN_ROLE in held,
        sessions=sessions,
        apps=connected_apps(session, user.id),
        factors=Factors(session, runtime()).overview(user),
        events=events,
        **context,
    )


@page("/users/<uuid:user_id>", Permission.USERS_READ)
def user(user_id: uuid.UUID) -> ResponseReturnValue:
    return show_user(user_or_404(user_id))
