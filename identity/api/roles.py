"""Roles, the permissions identity and applications declare, and role assignments."""

from __future__ import annotations

import uuid

from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Input, Output
from identity.api.operations import operation, require_match
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.oauth import Client
from identity.models.rbac import ClientPermission, Group, Role, RoleAssignment
from identity.models.user import User
from identity.rbac import service as rbac
from identity.rbac.permissions import BUILTIN_ROLES, DESCRIPTIONS, Permission

NAME = Field(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class RoleOut(Output):
    id: uuid.UUID
    name: str
    description: str
    builtin: bool
    permissions: list[str]
    parents: list[str] = Field(description="Roles whose permissions this role inherits.")


class RoleList(Output):
    items: list[RoleOut]


class RoleCreate(Input):
    name: str = NAME
    description: str = Field("", max_length=500)
    permissions: list[str] = Field(default_factory=list, max_length=200)
    parents: list[str] = Field(default_factory=list, max_length=50)


class RoleUpdate(Input):
    description: str | None = Field(None, max_length=500)
    permissions: list[str] | None = Field(None, max_length=200)
    parents: list[str] | None = Field(None, max_length=50)


class PermissionOut(Output):
    name: str
    description: str
    client_id: str | None = Field(
        None, description="The application declaring it; none: identity's."
    )
    in_token: bool = False


class PermissionList(Output):
    items: list[PermissionOut]


class AssignmentCreate(Input):
    """The role, and exactly one of user_id, group and client_id as the holder."""

    role: str = Field(max_length=64)
    user_id: uuid.UUID | None = None
    group: str | None = Field(None, max_length=64)
    client_id: str | None = Field(None, max_length=100, description="A service account.")
    scope_client_id: str | None = Field(
        None, max_length=100, description="Only within this client (an application role)."
    )

    @model_validator(mode="after")
    def _one_holder(self) -> AssignmentCreate:
        holders = [h for h in (self.user_id, self.group, self.client_id) if h is not None]
        if len(holders) != 1:
            raise ValueError("give exactly one of user_id, group and client_id")
        return self


class AssignmentOut(Output):
    id: uuid.UUID
    role: str
    user_id: uuid.UUID | None = None
    group: str | None = None
    client_id: str | None = None
    scope_client_id: str | None = None


class AssignmentQuery(Input):
    role: str | None = Field(None, max_length=64)
    user_id: uuid.UUID | None = None
    group: str | None = Field(None, max_length=64)
    client_id: str | None = Field(None, max_length=100)


class AssignmentList(Output):
    items: list[AssignmentOut]


def role_out(session: Session, role: Role) -> RoleOut:
    permissions = (
        sorted(BUILTIN_ROLES[role.name][1])
        if role.builtin and role.name in BUILTIN_ROLES
        else rbac.permissions_of(session, role)
    )
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        builtin=role.builtin,
        permissions=permissions,
        parents=rbac.parents_of(session, role),
    )


def client_by_id(session: Session, client_id: str) -> Client:
    client = session.execute(
        select(Client).where(Client.client_id == client_id)
    ).scalar_one_or_none()
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


@operation(
    bp,
    "GET",
    "/roles",
    summary="List roles",
    tag="Roles",
    permission=Permission.ROLES_READ,
    response=RoleList,
)
def list_roles(caller: Caller) -> RoleList:
    session = db.session()
    roles = session.execute(select(Role).order_by(Role.name)).scalars()
    return RoleList(items=[role_out(session, r) for r in roles])


@operation(
    bp,
    "POST",
    "/roles",
    summary="Create a role",
    tag="Roles",
    permission=Permission.ROLES_WRITE,
    body=RoleCreate,
    response=RoleOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_role(caller: Caller, body: RoleCreate) -> RoleOut:
    """A role holds permissions (resource:action, resource:* or *) and may inherit other
    roles. Nobody can put into a role a permission they do not hold."""
    session = db.session()
    role = rbac.create_role(
        session,
        body.name,
        description=body.description,
        permissions=body.permissions,
        parents=body.parents,
        actor=caller.principal,
    )
    return role_out(session, role)


@operation(
    bp,
    "GET",
    "/roles/<role_name>",
    summary="Read a role",
    tag="Roles",
    permission=Permission.ROLES_READ,
    response=RoleOut,
    etag=True,
)
def get_role(caller: Caller, role_name: str) -> RoleOut:
    session = db.session()
    return role_out(session, rbac.role_by_name(session, role_name))


@operation(
    bp,
    "PATCH",
    "/roles/<role_name>",
    summary="Change a role",
    tag="Roles",
    permission=Permission.ROLES_WRITE,
    body=RoleUpdate,
    response=RoleOut,
    etag=True,
    errors=(409,),
)
def update_role(caller: Caller, role_name: str, body: RoleUpdate) -> RoleOut:
    """Fields left out keep their value; permissions and parents are replaced whole."""
    session = db.session()
    role = rbac.role_by_name(session, role_name, for_update=True)
    require_match(role_out(session, role))
    rbac.update_role(
        session,
        role,
        description=body.description,
        permissions=body.permissions,
        parents=body.parents,
        actor=caller.principal,
    )
    return role_out(session, role)


@operation(
    bp,
    "DELETE",
    "/roles/<role_name>",
    summary="Delete a role",
    tag="Roles",
    permission=Permission.ROLES_WRITE,
    status=204,
    errors=(409,),
)
def delete_role(caller: Caller, role_name: str) -> None:
    """Built-in roles cannot be deleted, nor a role whose loss leaves no administrator."""
    session = db.session()
    rbac.delete_role(session, rbac.role_by_name(session, role_name), actor=caller.principal)


@operation(
    bp,
    "GET",
    "/permissions",
    summary="List permissions",
    tag="Roles",
    permission=Permission.PERMISSIONS_READ,
    response=PermissionList,
)
def list_permissions(caller: Caller) -> PermissionList:
    """identity's own permissions, then those each application declares."""
    return all_permissions(db.session())


def all_permissions(session: Session) -> PermissionList:
    """identity's own permissions, then those each application declares (the console
    lists the same)."""
    items = [
        PermissionOut(name=p.value, description=DESCRIPTIONS[p], client_id=None) for p in Permission
    ]
    rows = session.execute(
        select(ClientPermission, Client.client_id)
        .join(Client, Client.id == ClientPermission.client_pk)
        .order_by(Client.client_id, ClientPermission.name)
    )
    items += [
        PermissionOut(name=p.name, description=p.description, client_id=cid, in_token=p.in_token)
        for p, cid in rows
    ]
    return PermissionList(items=items)


def assignment_out(session: Session, row: RoleAssignment) -> AssignmentOut:
    role = session.get(Role, row.role_id)
    group = session.get(Group, row.group_id) if row.group_id else None
    client = session.get(Client, row.client_pk) if row.client_pk else None
    scope = session.get(Client, row.scope_client_pk) if row.scope_client_pk else None
    return AssignmentOut(
        id=row.id,
        role=role.name if role else "",
        user_id=row.user_id,
        group=group.name if group else None,
        client_id=client.client_id if client else None,
        scope_client_id=scope.client_id if scope else None,
    )


@operation(
    bp,
    "GET",
    "/assignments",
    summary="List role assignments",
    tag="Roles",
    permission=Permission.ROLES_READ,
    query=AssignmentQuery,
    response=AssignmentList,
)
def list_assignments(caller: Caller, query: AssignmentQuery) -> AssignmentList:
    session = db.session()
    statement = select(RoleAssignment).order_by(RoleAssignment.created_at, RoleAssignment.id)
    if query.role is not None:
        statement = statement.where(
            RoleAssignment.role_id == rbac.role_by_name(session, query.role).id
        )
    if query.user_id is not None:
        statement = statement.where(RoleAssignment.user_id == query.user_id)
    if query.group is not None:
        statement = statement.where(
            RoleAssignment.group_id == rbac.group_by_name(session, query.group).id
        )
    if query.client_id is not None:
        statement = statement.where(
            RoleAssignment.client_pk == client_by_id(session, query.client_id).id
        )
    return AssignmentList(
        items=[assignment_out(session, r) for r in session.execute(statement.limit(1000)).scalars()]
    )


@operation(
    bp,
    "POST",
    "/assignments",
    summary="Give a role",
    tag="Roles",
    permission=Permission.ROLES_ASSIGN,
    body=AssignmentCreate,
    response=AssignmentOut,
    status=201,
    errors=(409,),
)
def create_assignment(caller: Caller, body: AssignmentCreate) -> AssignmentOut:
    """Give a role to a user, a group or a client's service account, globally or within
    one client. Nobody can give a role that holds more than they do."""
    session = db.session()
    role = rbac.role_by_name(session, body.role)
    if body.user_id is not None:
        if session.get(User, body.user_id) is None:
            raise NotFound(f"no user with id {body.user_id}")
        principal = rbac.Principal("user", body.user_id)
    elif body.group is not None:
        principal = rbac.Principal("group", rbac.group_by_name(session, body.group).id)
    else:
        principal = rbac.Principal("client", client_by_id(session, str(body.client_id)).id)
    scope = client_by_id(session, body.scope_client_id).id if body.scope_client_id else None
    row = rbac.assign(session, role, principal, scope=scope, actor=caller.principal)
    return assignment_out(session, row)


@operation(
    bp,
    "DELETE",
    "/assignments/<uuid:assignment_id>",
    summary="Take a role back",
    tag="Roles",
    permission=Permission.ROLES_ASSIGN,
    status=204,
    errors=(409,),
)
def delete_assignment(caller: Caller, assignment_id: uuid.UUID) -> None:
    """Refused when it would leave no active administrator, when the caller does not hold
    everything the role grants, or when its holder (a user or a service account) holds a
    permission the caller lacks."""
    session = db.session()
    row = session.get(RoleAssignment, assignment_id)
    if row is None:
        raise NotFound(f"no assignment with id {assignment_id}")
    rbac.unassign(session, row, actor=caller.principal)
