"""Groups (which nest) and their members."""

from __future__ import annotations

import uuid

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Input, Output
from identity.api.operations import operation, require_match
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.rbac import Group
from identity.models.user import User
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission

NAME = Field(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class GroupOut(Output):
    id: uuid.UUID
    name: str
    description: str
    parent: str | None = Field(None, description="The group this one is inside.")


class GroupList(Output):
    items: list[GroupOut]


class GroupCreate(Input):
    name: str = NAME
    description: str = Field("", max_length=500)
    parent: str | None = Field(None, max_length=64)


class GroupUpdate(Input):
    description: str | None = Field(None, max_length=500)
    parent: str | None = Field(
        None, max_length=64, description="Move inside this group; an empty string: to the top."
    )


class MemberOut(Output):
    id: uuid.UUID
    email: str


class MemberList(Output):
    items: list[MemberOut]


def group_out(session: Session, group: Group) -> GroupOut:
    parent = session.get(Group, group.parent_id) if group.parent_id else None
    return GroupOut(
        id=group.id,
        name=group.name,
        description=group.description,
        parent=parent.name if parent else None,
    )


def _user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


@operation(
    bp,
    "GET",
    "/groups",
    summary="List groups",
    tag="Groups",
    permission=Permission.GROUPS_READ,
    response=GroupList,
)
def list_groups(caller: Caller) -> GroupList:
    session = db.session()
    groups = session.execute(select(Group).order_by(Group.name)).scalars()
    return GroupList(items=[group_out(session, g) for g in groups])


@operation(
    bp,
    "POST",
    "/groups",
    summary="Create a group",
    tag="Groups",
    permission=Permission.GROUPS_WRITE,
    body=GroupCreate,
    response=GroupOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_group(caller: Caller, body: GroupCreate) -> GroupOut:
    session = db.session()
    group = rbac.create_group(
        session,
        body.name,
        description=body.description,
        parent=body.parent,
        actor=caller.principal,
    )
    return group_out(session, group)


@operation(
    bp,
    "GET",
    "/groups/<group_name>",
    summary="Read a group",
    tag="Groups",
    permission=Permission.GROUPS_READ,
    response=GroupOut,
    etag=True,
)
def get_group(caller: Caller, group_name: str) -> GroupOut:
    session = db.session()
    return group_out(session, rbac.group_by_name(session, group_name))


@operation(
    bp,
    "PATCH",
    "/groups/<group_name>",
    summary="Change a group",
    tag="Groups",
    permission=Permission.GROUPS_WRITE,
    body=GroupUpdate,
    response=GroupOut,
    etag=True,
    errors=(409,),
)
def update_group(caller: Caller, group_name: str, body: GroupUpdate) -> GroupOut:
    session = db.session()
    group = rbac.group_by_name(session, group_name, for_update=True)
    require_match(group_out(session, group))
    rbac.update_group(
        session,
        group,
        description=body.description,
        parent=body.parent or None,
        clear_parent=body.parent == "",
        actor=caller.principal,
    )
    return group_out(session, group)


@operation(
    bp,
    "DELETE",
    "/groups/<group_name>",
    summary="Delete a group",
    tag="Groups",
    permission=Permission.GROUPS_WRITE,
    status=204,
    errors=(409,),
)
def delete_group(caller: Caller, group_name: str) -> None:
    """Its subgroups go with it; its members stay, without the group's roles."""
    session = db.session()
    rbac.delete_group(session, rbac.group_by_name(session, group_name), actor=caller.principal)


@operation(
    bp,
    "GET",
    "/groups/<group_name>/members",
    summary="List a group's members",
    tag="Groups",
    permission=Permission.GROUPS_READ,
    response=MemberList,
)
def list_members(caller: Caller, group_name: str) -> MemberList:
    session = db.session()
    users = rbac.members_of(session, rbac.group_by_name(session, group_name))
    return MemberList(items=[MemberOut(id=u.id, email=u.email) for u in users])


@operation(
    bp,
    "PUT",
    "/groups/<group_name>/members/<uuid:user_id>",
    summary="Add a member",
    tag="Groups",
    permission=Permission.GROUPS_WRITE,
    status=204,
    errors=(409,),
)
def add_member(caller: Caller, group_name: str, user_id: uuid.UUID) -> None:
    """The user gets the group's roles (and its parents'): only someone who holds all of
    them may add members."""
    session = db.session()
    rbac.add_member(
        session,
        rbac.group_by_name(session, group_name),
        _user(session, user_id),
        actor=caller.principal,
    )


@operation(
    bp,
    "DELETE",
    "/groups/<group_name>/members/<uuid:user_id>",
    summary="Remove a member",
    tag="Groups",
    permission=Permission.GROUPS_WRITE,
    status=204,
    errors=(409,),
)
def remove_member(caller: Caller, group_name: str, user_id: uuid.UUID) -> None:
    session = db.session()
    rbac.remove_member(
        session,
        rbac.group_by_name(session, group_name),
        _user(session, user_id),
        actor=caller.principal,
    )
