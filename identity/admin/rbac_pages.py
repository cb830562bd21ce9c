"""/admin/roles and /admin/permissions: roles with their inheritance drawn, a role's
permissions (direct and inherited) and holders, defining, changing and deleting roles,
giving and taking them; the permissions identity and applications declare.

Each action calls the service POST/PATCH/DELETE /api/v1/roles and /api/v1/assignments call
(identity.api.roles), with the operator as the actor.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, flash, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from identity.accounts.management import find_user
from identity.admin.console import (
    back,
    check_sensitive,
    is_stale,
    operator,
    page,
    render,
    version_of,
)
from identity.admin.rbac_common import (
    give,
    holdings,
    inheritance,
    lines,
    parse,
    refused,
    savepoint,
    take,
)
from identity.api.roles import (
    RoleCreate,
    RoleOut,
    RoleUpdate,
    all_permissions,
    client_by_id,
    role_out,
)
from identity.exceptions import IdentityError
from identity.extensions import db
from identity.models.rbac import Role, RoleAssignment
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission
from identity.rbac.service import Principal
from identity.runtime import runtime


@page("/roles", Permission.ROLES_READ)
def roles() -> ResponseReturnValue:
    session = db.session()
    counts = dict(
        session.execute(
            select(RoleAssignment.role_id, func.count()).group_by(RoleAssignment.role_id)
        ).all()
    )
    items = [
        (role_out(session, role), counts.get(role.id, 0))
        for role in session.execute(select(Role).order_by(Role.name)).scalars()
    ]
    tree = inheritance(runtime().rbac.get(session))
    return render("rbac/roles.html", items=items, branches=tree)


@page("/permissions", Permission.PERMISSIONS_READ)
def permissions() -> ResponseReturnValue:
    items = all_permissions(db.session()).items
    own = [p for p in items if p.client_id is None]
    declared = [p for p in items if p.client_id is not None]
    # The clients' pages, when the console has them.
    client_links = "admin.client" in current_app.view_functions
    return render("rbac/permissions.html", own=own, declared=declared, client_links=client_links)


# Defining a role ---------------------------------------------------------------------------


def _role_form() -> dict[str, Any]:
    """The role form's values: checked permissions plus those typed, checked parents."""
    return {
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
        "permissions": sorted(
            set(request.form.getlist("permission")) | set(lines(request.form.get("more")))
        ),
        "parents": sorted(set(request.form.getlist("parent"))),
    }


def _choices() -> dict[str, Any]:
    """What the role form offers to tick: known permissions and the roles to inherit."""
    session = db.session()
    return {
        "known": all_permissions(session).items,
        "role_names": list(session.execute(select(Role.name).order_by(Role.name)).scalars()),
    }


# Under /roles/-/: "-" is never a role's name, so a role may be called "new" (GitLab's way).
@page("/roles/-/new", Permission.ROLES_WRITE, methods=("GET", "POST"), endpoint="roles_new")
def new_role() -> ResponseReturnValue:
    if request.method == "GET":
        form = {"name": "", "description": "", "permissions": [], "parents": []}
        return render("rbac/role_new.html", form=form, **_choices())
    form = _role_form()
    session = db.session()
    try:
        body = parse(RoleCreate, **form)
        with savepoint():
            role = rbac.create_role(
                session,
                body.name,
                description=body.description,
                permissions=body.permissions,
                parents=body.parents,
                actor=operator().principal,
            )
    except IdentityError as error:
        message, status = refused(error)
        return render("rbac/role_new.html", status, form=form, error=message, **_choices())
    flash(f"Role {role.name} created.", "success")
    return back("admin.role", name=role.name)


# A role ------------------------------------------------------------------------------------


def _show_role(
    name: str, status: int = 200, *, errors: dict[str, str] | None = None, form: Any = None
) -> ResponseReturnValue:
    session = db.session()
    role = rbac.role_by_name(session, name)
    out = role_out(session, role)
    snapshot = runtime().rbac.get(session)
    granted = sorted(snapshot.role_grants(role.id).items())
    children = sorted(r.name for r in snapshot.roles.values() if role.id in r.parents)
    held, next_cursor = holdings(session, role=role)
    if form is None:
        form = {"description": out.description, "permissions": out.permissions}
        form["parents"] = out.parents
    return render(
        "rbac/role.html",
        status,
        role=out,
        version=version_of(out),
        granted=granted,
        children=children,
        holdings=held,
        next_cursor=next_cursor,
        errors=errors or {},
        form=form,
        **_choices(),
    )


@page("/roles/<name>", Permission.ROLES_READ, endpoint="role")
def role(name: str) -> ResponseReturnValue:
    return _show_role(name)


@page("/roles/<name>/edit", Permission.ROLES_WRITE, methods=("POST",), endpoint="roles_update")
def update_role(name: str) -> ResponseReturnValue:
    session = db.session()
    role = rbac.role_by_name(session, name, for_update=True)
    current: RoleOut = role_out(session, role)
    if is_stale(request.form.get("version"), current):
        message = (
            "Someone else changed this role meanwhile: here it is now; make your change again."
        )
        return _show_role(name, 409, errors={"edit": message})
    form = _role_form()
    try:
        if role.builtin:  # identity's own: only its description changes
            body = parse(RoleUpdate, description=form["description"])
        else:
            body = parse(RoleUpdate, **{k: v for k, v in form.items() if k != "name"})
        with savepoint():
            rbac.update_role(
                session,
                role,
                description=body.description,
                permissions=None if body.permissions == current.permissions else body.permissions,
                parents=None if body.parents == current.parents else body.parents,
                actor=operator().principal,
            )
    except IdentityError as error:
        message, status = refused(error)
        return _show_role(name, status, errors={"edit": message}, form=form)
    flash(f"Role {name} saved.", "success")
    return back("admin.role", name=name)


@page("/roles/<name>/delete", Permission.ROLES_WRITE, methods=("POST",), endpoint="roles_delete")
def delete_role(name: str) -> ResponseReturnValue:
    session = db.session()
    role = rbac.role_by_name(session, name)
    problem = check_sensitive(request.form.get("reauth"), request.form.get("confirm"), name)
    if problem:
        return _show_role(name, 400, errors={"delete": problem})
    try:
        with savepoint():
            rbac.delete_role(session, role, actor=operator().principal)
    except IdentityError as error:
        message, status = refused(error)
        return _show_role(name, status, errors={"delete": message})
    flash(f"Role {name} deleted.", "success")
    return back("admin.roles")


# Its holders -------------------------------------------------------------------------------


@page("/roles/<name>/holders", Permission.ROLES_ASSIGN, methods=("POST",), endpoint="roles_give")
def give_role(name: str) -> ResponseReturnValue:
    session = db.session()
    kind = request.form.get("kind", "user")
    who = request.form.get("holder", "").strip()
    try:
        if kind == "group":
            holder = Principal("group", rbac.group_by_name(session, who).id)
        elif kind == "client":
            holder = Principal("client", client_by_id(session, who).id)
        else:
            holder = Principal("user", find_user(session, who).id)
        give(session, name, holder, request.form.get("scope", "").strip() or None)
    except IdentityError as error:
        message, status = refused(error)
        return _show_role(name, status, errors={"give": message})
    flash(f"Role {name} given to {who}.", "success")
    return back("admin.role", name=name)


@page(
    "/roles/<name>/holders/<uuid:assignment>/delete",
    Permission.ROLES_ASSIGN,
    methods=("POST",),
    endpoint="roles_take",
)
def take_role(name: str, assignment: uuid.UUID) -> ResponseReturnValue:
    try:
        session = db.session()
        taken = take(session, assignment, role=rbac.role_by_name(session, name))
    except IdentityError as error:
        message, status = refused(error)
        return _show_role(name, status, errors={"holders": message})
    flash(f"Role {taken.role} taken from {taken.holder}.", "success")
    return back("admin.role", name=name)
