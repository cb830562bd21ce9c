"""/admin/groups: groups (which nest), their members and their roles; creating, changing and
deleting groups, adding and removing members, giving and taking the group's roles.

Each action calls the service /api/v1/groups and /api/v1/assignments call (identity.api.groups
and identity.api.roles), with the operator as the actor.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, request
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
from identity.admin.rbac_common import PAGE, give, holdings, parse, refused, savepoint, take
from identity.api.common import decode_cursor, encode_cursor
from identity.api.groups import GroupCreate, GroupUpdate, group_out
from identity.exceptions import IdentityError, NotFound
from identity.extensions import db
from identity.models.rbac import Group, Role, RoleAssignment, group_members
from identity.models.user import User
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission
from identity.rbac.service import Principal


@page("/groups", Permission.GROUPS_READ)
def groups() -> ResponseReturnValue:
    session = db.session()
    query = select(Group).order_by(Group.name)
    after = decode_cursor(request.args.get("cursor") or None, 1)
    if after is not None:
        query = query.where(Group.name > after[0])
    rows = list(session.execute(query.limit(PAGE + 1)).scalars())
    next_cursor = encode_cursor(rows[PAGE - 1].name) if len(rows) > PAGE else None
    rows = rows[:PAGE]
    ids = [g.id for g in rows]
    counts: dict[uuid.UUID, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(group_members.c.group_id, func.count())
            .where(group_members.c.group_id.in_(ids))
            .group_by(group_members.c.group_id)
        ).all()
    )
    roles: dict[uuid.UUID | None, list[str]] = {}
    for group_id, role_name in session.execute(
        select(RoleAssignment.group_id, Role.name)
        .join(Role, Role.id == RoleAssignment.role_id)
        .where(RoleAssignment.group_id.in_(ids))
        .order_by(Role.name)
    ):
        roles.setdefault(group_id, []).append(role_name)
    parents = {g.id: g.name for g in rows}
    missing = {g.parent_id for g in rows if g.parent_id and g.parent_id not in parents}
    if missing:
        parents.update(session.execute(select(Group.id, Group.name).where(Group.id.in_(missing))))
    items = [
        (g, parents.get(g.parent_id) if g.parent_id else None, counts.get(g.id, 0), roles.get(g.id))
        for g in rows
    ]
    return render("rbac/groups.html", items=items, next_cursor=next_cursor)


# Under /groups/-/: "-" is never a group's name, so a group may be called "new".
@page("/groups/-/new", Permission.GROUPS_WRITE, methods=("GET", "POST"), endpoint="groups_new")
def new_group() -> ResponseReturnValue:
    form = {key: request.form.get(key, "").strip() for key in ("name", "description", "parent")}
    if request.method == "GET":
        return render("rbac/group_new.html", form=form)
    try:
        body = parse(GroupCreate, **{**form, "parent": form["parent"] or None})
        with savepoint():
            group = rbac.create_group(
                db.session(),
                body.name,
                description=body.description,
                parent=body.parent,
                actor=operator().principal,
            )
    except IdentityError as error:
        message, status = refused(error)
        return render("rbac/group_new.html", status, form=form, error=message)
    flash(f"Group {group.name} created.", "success")
    return back("admin.group", name=group.name)


# A group -----------------------------------------------------------------------------------


def _members(group: Group) -> tuple[list[User], str | None]:
    query = (
        select(User)
        .join(group_members, group_members.c.user_id == User.id)
        .where(group_members.c.group_id == group.id)
        .order_by(User.email)
    )
    after = decode_cursor(request.args.get("members") or None, 1)
    if after is not None:
        query = query.where(User.email > after[0])
    rows = list(db.session().execute(query.limit(PAGE + 1)).scalars())
    return rows[:PAGE], encode_cursor(rows[PAGE - 1].email) if len(rows) > PAGE else None


def _show_group(
    name: str, status: int = 200, *, errors: dict[str, str] | None = None, form: Any = None
) -> ResponseReturnValue:
    session = db.session()
    group = rbac.group_by_name(session, name)
    out = group_out(session, group)
    members, next_members = _members(group)
    held, next_cursor = holdings(session, group=group)
    subgroups = list(
        session.execute(
            select(Group.name).where(Group.parent_id == group.id).order_by(Group.name)
        ).scalars()
    )
    role_names = list(session.execute(select(Role.name).order_by(Role.name)).scalars())
    return render(
        "rbac/group.html",
        status,
        group=out,
        version=version_of(out),
        members=members,
        next_members=next_members,
        holdings=held,
        next_cursor=next_cursor,
        subgroups=subgroups,
        role_names=role_names,
        errors=errors or {},
        form=form or {"description": out.description, "parent": out.parent or ""},
    )


@page("/groups/<name>", Permission.GROUPS_READ, endpoint="group")
def group(name: str) -> ResponseReturnValue:
    return _show_group(name)


@page("/groups/<name>/edit", Permission.GROUPS_WRITE, methods=("POST",), endpoint="groups_update")
def update_group(name: str) -> ResponseReturnValue:
    session = db.session()
    group = rbac.group_by_name(session, name, for_update=True)
    current = group_out(session, group)
    if is_stale(request.form.get("version"), current):
        message = (
            "Someone else changed this group meanwhile: here it is now; make your change again."
        )
        return _show_group(name, 409, errors={"edit": message})
    # A field the form did not send keeps its value (the parent is moved only when sent).
    form = {
        "description": request.form.get("description", current.description).strip(),
        "parent": request.form.get("parent", current.parent or "").strip(),
    }
    try:
        body = parse(GroupUpdate, **form)
        moved = body.parent != (current.parent or "")
        with savepoint():
            rbac.update_group(
                session,
                group,
                description=body.description,
                parent=(body.parent or None) if moved else None,
                clear_parent=moved and body.parent == "",
                actor=operator().principal,
            )
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"edit": message}, form=form)
    flash(f"Group {name} saved.", "success")
    return back("admin.group", name=name)


@page("/groups/<name>/delete", Permission.GROUPS_WRITE, methods=("POST",), endpoint="groups_delete")
def delete_group(name: str) -> ResponseReturnValue:
    session = db.session()
    group = rbac.group_by_name(session, name)
    problem = check_sensitive(request.form.get("reauth"), request.form.get("confirm"), name)
    if problem:
        return _show_group(name, 400, errors={"delete": problem})
    try:
        with savepoint():
            rbac.delete_group(session, group, actor=operator().principal)
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"delete": message})
    flash(f"Group {name} deleted.", "success")
    return back("admin.groups")


# Members -----------------------------------------------------------------------------------


@page("/groups/<name>/members", Permission.GROUPS_WRITE, methods=("POST",), endpoint="groups_add")
def add_member(name: str) -> ResponseReturnValue:
    session = db.session()
    email = request.form.get("email", "").strip()
    try:
        group = rbac.group_by_name(session, name)
        user = find_user(session, email)
        with savepoint():
            rbac.add_member(session, group, user, actor=operator().principal)
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"members": message})
    flash(f"{user.email} added to {name}.", "success")
    return back("admin.group", name=name)


@page(
    "/groups/<name>/members/<uuid:user_id>/delete",
    Permission.GROUPS_WRITE,
    methods=("POST",),
    endpoint="groups_remove",
)
def remove_member(name: str, user_id: uuid.UUID) -> ResponseReturnValue:
    session = db.session()
    try:
        group = rbac.group_by_name(session, name)
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        email = user.email
        with savepoint():
            rbac.remove_member(session, group, user, actor=operator().principal)
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"members": message})
    flash(f"{email} removed from {name}.", "success")
    return back("admin.group", name=name)


# The group's roles -------------------------------------------------------------------------


@page("/groups/<name>/roles", Permission.ROLES_ASSIGN, methods=("POST",), endpoint="groups_give")
def give_role(name: str) -> ResponseReturnValue:
    session = db.session()
    role_name = request.form.get("role", "")
    try:
        group = rbac.group_by_name(session, name)
        give(
            session,
            role_name,
            Principal("group", group.id),
            request.form.get("scope", "").strip() or None,
        )
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"roles": message})
    flash(f"Group {name} now has the role {role_name}.", "success")
    return back("admin.group", name=name)


@page(
    "/groups/<name>/roles/<uuid:assignment>/delete",
    Permission.ROLES_ASSIGN,
    methods=("POST",),
    endpoint="groups_take",
)
def take_role(name: str, assignment: uuid.UUID) -> ResponseReturnValue:
    try:
        session = db.session()
        taken = take(session, assignment, group=rbac.group_by_name(session, name))
    except IdentityError as error:
        message, status = refused(error)
        return _show_group(name, status, errors={"roles": message})
    flash(f"Role {taken.role} taken from group {name}.", "success")
    return back("admin.group", name=name)
