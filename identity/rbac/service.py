"""Changing roles, groups, memberships, assignments and application permissions.

Each function takes a session and plain values, checks the rules the engine relies on
(role inheritance is a DAG, groups form a tree, nobody grants more than they hold, an
active admin always remains), flushes, audits, and publishes ``changes.RBAC`` so that
every process reloads its snapshot. ``actor`` is who asks: None for the operator at the
`identity` command, who may do anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity import audit, changes
from identity.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from identity.models.rbac import (
    ClientPermission,
    Group,
    Role,
    RoleAssignment,
    group_members,
    role_parents,
    role_permissions,
)
from identity.models.user import User, roles_by_names
from identity.rbac.permissions import (
    ADMIN_ROLE,
    BUILTIN_ROLES,
    IDENTITY_RESOURCES,
    check_grantable,
    check_name,
)
from identity.rbac.policy import PrincipalKind, Snapshot, holds_all
from identity.rbac.store import load_snapshot

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID


def check_label(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"not a valid {kind} name: {name!r} (lower case letters, digits, '.', '_', '-';"
            " 64 at most)"
        )
    return name


def role_by_name(session: Session, name: str, *, for_update: bool = False) -> Role:
    """The role of that name (NotFound); ``for_update`` locks its row (a PATCH that checks
    If-Match against it)."""
    query = select(Role).where(Role.name == name)
    role = session.execute(query.with_for_update() if for_update else query).scalar_one_or_none()
    if role is None:
        raise NotFound(f"no role named {name!r}")
    return role


def group_by_name(session: Session, name: str, *, for_update: bool = False) -> Group:
    query = select(Group).where(Group.name == name)
    group = session.execute(query.with_for_update() if for_update else query).scalar_one_or_none()
    if group is None:
        raise NotFound(f"no group named {name!r}")
    return group


def permissions_of(session: Session, role: Role) -> list[str]:
    query = select(role_permissions.c.permission).where(role_permissions.c.role_id == role.id)
    return sorted(session.execute(query).scalars())


def parents_of(session: Session, role: Role) -> list[str]:
    query = (
        select(Role.name)
        .join(role_parents, role_parents.c.parent_id == Role.id)
        .where(role_parents.c.role_id == role.id)
    )
    return sorted(session.execute(query).scalars())


# -- guards -----------------------------------------------------------------------------


def require_holds(
    session: Session,
    actor: Principal | None,
    grants: Iterable[str],
    scope: uuid.UUID | None = None,
    snapshot: Snapshot | None = None,
) -> None:
    """Nobody grants more than they hold (AUTHZ-05)."""
    if actor is None:
        return
    snapshot = snapshot or load_snapshot(session)
    missing = holds_all(snapshot, actor.kind, actor.id, grants, scope)
    if missing:
        raise Forbidden(f"you cannot grant what you do not hold: {', '.join(missing)}")


def require_outranks(session: Session, actor: Principal | None, user_id: uuid.UUID) -> None:
    """Nobody changes, disables, enables or deletes a user who holds a permission they do
    not hold themselves: a user manager cannot disable an administrator (AUTHZ-02). The
    target's holdings count globally and within each client where they have a role."""
    require_outranks_principal(session, actor, Principal("user", user_id))


def require_outranks_principal(
    session: Session, actor: Principal | None, target: Principal
) -> None:
    """The same for any principal: a client's service account can be changed, its secret
    rotated or the client deleted only by someone holding all it holds (AUTHZ-02)."""
    if actor is None:
        return
    snapshot = load_snapshot(session)
    scopes: set[uuid.UUID | None] = {None}
    for _, source in snapshot.sources(target.kind, target.id):
        scopes.update(grant.scope for grant in snapshot.grants.get(source, ()))
    missing: set[str] = set()
    for scope in scopes:
        held = snapshot.holdings(target.kind, target.id, scope)
        missing.update(holds_all(snapshot, actor.kind, actor.id, held, scope))
    if missing:
        raise Forbidden(
            f"the {target.kind} holds permissions you do not hold: " + ", ".join(sorted(missing))
        )


def _require_holds_per_scope(
    session: Session,
    actor: Principal | None,
    grants: dict[uuid.UUID | None, set[str]],
    snapshot: Snapshot,
) -> None:
    for scope, held in grants.items():
        require_holds(session, actor, held, scope, snapshot)


def _subtree(snapshot: Snapshot, group_id: uuid.UUID) -> list[uuid.UUID]:
    """The group and every group inside it, at any depth."""
    found = [group_id]
    for current in found:  # grows as it goes: breadth first
        children = [g.id for g in snapshot.groups.values() if g.parent == current]
        found.extend(c for c in children if c not in found)
    return found


def _grants_of_roles(snapshot: Snapshot, role_ids: Iterable[uuid.UUID]) -> set[str]:
    return {grant for role_id in role_ids for grant in snapshot.role_grants(role_id)}


def _group_role_grants(snapshot: Snapshot, group_id: uuid.UUID) -> dict[uuid.UUID | None, set[str]]:
    """What membership of a group (and so of its ancestors) brings, per scope."""
    out: dict[uuid.UUID | None, set[str]] = {}
    for group in snapshot.group_chain(group_id):
        for grant in snapshot.grants.get(group.id, ()):
            out.setdefault(grant.scope, set()).update(snapshot.role_grants(grant.role))
    return out


def ensure_admin_remains(session: Session) -> None:
    """Refuse a change that leaves no active user holding the admin role (AUTHZ-08).

    The admin role's row is locked first: two administrators removing each other at once
    are serialised, and the second sees the first's change (PostgreSQL; SQLite's writes
    are serialised already)."""
    session.flush()
    session.execute(select(Role.id).where(Role.name == ADMIN_ROLE).with_for_update())
    snapshot = load_snapshot(session)
    admin = snapshot.role_named(ADMIN_ROLE)
    if admin is None:
        raise Conflict("the admin role cannot be removed")
    active = session.execute(select(User.id).where(User.disabled_at.is_(None))).scalars()
    for user_id in active:
        if ADMIN_ROLE in snapshot.role_names("user", user_id):
            return
    raise Conflict("that would leave no active administrator")


def is_admin(session: Session, user_id: uuid.UUID) -> bool:
    """Whether the user has the admin role (directly, through a group or inherited): only
    disabling or deleting such a user can leave no administrator."""
    return ADMIN_ROLE in load_snapshot(session).role_names("user", user_id)


def _insert_unique(session: Session, row: object, conflict: str) -> None:
    """Add a row whose name is unique: a concurrent request that took the name first is a
    Conflict, not a server error (the check before it cannot see uncommitted rows)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


def _changed(session: Session, *topics: str) -> None:
    session.flush()
    for topic in (changes.RBAC, *topics):
        changes.publish(session, topic)


# -- roles ------------------------------------------------------------------------------


def ensure_builtin_roles(session: Session) -> None:
    """Create the built-in roles that are missing (migration 0005 creates them too)."""
    existing = set(session.execute(select(Role.name)).scalars())
    for name, (description, _) in BUILTIN_ROLES.items():
        if name not in existing:
            session.add(Role(name=name, description=description, builtin=True))
    session.flush()


def create_role(
    session: Session,
    name: str,
    *,
    description: str = "",
    permissions: Iterable[str] = (),
    parents: Iterable[str] = (),
    actor: Principal | None = None,
) -> Role:
    check_label("role", name)
    if session.execute(select(Role.id).where(Role.name == name)).first() is not None:
        raise Conflict(f"a role named {name!r} exists")
    role = Role(name=name, description=description)
    _insert_unique(session, role, f"a role named {name!r} exists")
    _set_role_content(session, role, list(permissions), list(parents), actor)
    audit.record(
        session,
        "role.create",
        actor_id=actor_user(actor),
        role=name,
        permissions=permissions_of(session, role),
        parents=parents_of(session, role),
    )
    _changed(session)
    return role


def update_role(
    session: Session,
    role: Role,
    *,
    description: str | None = None,
    permissions: Iterable[str] | None = None,
    parents: Iterable[str] | None = None,
    actor: Principal | None = None,
) -> Role:
    if role.builtin and (permissions is not None or parents is not None):
        raise Conflict(f"{role.name} is built in: its permissions are identity's own")
    if permissions is not None or parents is not None:
        # Taking permissions out of a role is taking them from its holders: only someone
        # holding what the role holds now may change it (as for giving, AUTHZ-05).
        require_holds(session, actor, load_snapshot(session).role_grants(role.id))
    before = {"permissions": permissions_of(session, role), "parents": parents_of(session, role)}
    with session.begin_nested():  # undone alone when refused, the session stays usable
        if description is not None:
            role.description = description
        _set_role_content(
            session,
            role,
            None if permissions is None else list(permissions),
            None if parents is None else list(parents),
            actor,
        )
        ensure_admin_remains(session)
    after = {"permissions": permissions_of(session, role), "parents": parents_of(session, role)}
    audit.record(
        session,
        "role.update",
        actor_id=actor_user(actor),
        role=role.name,
        changed={k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]},
    )
    _changed(session)
    return role


def _set_role_content(
    session: Session,
    role: Role,
    permissions: list[str] | None,
    parents: list[str] | None,
    actor: Principal | None,
) -> None:
    if permissions is not None:
        wanted = sorted({check_grantable(p) for p in permissions})
        require_holds(session, actor, wanted)
        session.execute(delete(role_permissions).where(role_permissions.c.role_id == role.id))
        if wanted:
            session.execute(
                insert(role_permissions), [{"role_id": role.id, "permission": p} for p in wanted]
            )
    if parents is not None:
        parent_roles = [role_by_name(session, name) for name in dict.fromkeys(parents)]
        snapshot = load_snapshot(session)
        if any(p.id == role.id for p in parent_roles):
            raise InvalidInput(f"role {role.name} cannot inherit itself")
        for parent in parent_roles:
            # A cycle: the new parent already inherits (or is) this role.
            if role.id in snapshot.ancestry([parent.id]):
                raise InvalidInput(
                    f"role {role.name} cannot inherit {parent.name}: {parent.name} already"
                    f" inherits {role.name} (role inheritance cannot loop)"
                )
        require_holds(session, actor, _grants_of_roles(snapshot, (p.id for p in parent_roles)))
        session.execute(delete(role_parents).where(role_parents.c.role_id == role.id))
        if parent_roles:
            session.execute(
                insert(role_parents),
                [{"role_id": role.id, "parent_id": p.id} for p in parent_roles],
            )
    session.flush()


def delete_role(session: Session, role: Role, *, actor: Principal | None = None) -> None:
    if role.builtin:
        raise Conflict(f"{role.name} is built in and cannot be deleted")
    snapshot = load_snapshot(session)
    require_holds(session, actor, snapshot.role_grants(role.id), snapshot=snapshot)
    name = role.name
    with session.begin_nested():
        session.delete(role)
        ensure_admin_remains(session)
    audit.record(session, "role.delete", actor_id=actor_user(actor), role=name)
    _changed(session)


# -- groups -----------------------------------------------------------------------------


def create_group(
    session: Session,
    name: str,
    *,
    description: str = "",
    parent: str | None = None,
    actor: Principal | None = None,
) -> Group:
    check_label("group", name)
    if session.execute(select(Group.id).where(Group.name == name)).first() is not None:
        raise Conflict(f"a group named {name!r} exists")
    group = Group(name=name, description=description)
    if parent is not None:
        group.parent_id = group_by_name(session, parent).id
    _insert_unique(session, group, f"a group named {name!r} exists")
    audit.record(session, "group.create", actor_id=actor_user(actor), group=name, parent=parent)
    _changed(session)
    return group


def update_group(
    session: Session,
    group: Group,
    *,
    description: str | None = None,
    parent: str | None = None,
    clear_parent: bool = False,
    actor: Principal | None = None,
) -> Group:
    with session.begin_nested():
        if description is not None:
            group.description = description
        if (clear_parent or parent is not None) and group.parent_id is not None:
            # Members lose what the old parents gave: only who holds it may take it away.
            snapshot = load_snapshot(session)
            _require_holds_per_scope(
                session, actor, _group_role_grants(snapshot, group.parent_id), snapshot
            )
        if clear_parent:
            group.parent_id = None
        elif parent is not None:
            new_parent = group_by_name(session, parent)
            snapshot = load_snapshot(session)
            if group.id in {g.id for g in snapshot.group_chain(new_parent.id)}:
                raise InvalidInput(
                    f"group {group.name} cannot be inside {parent}: {parent} is {group.name}"
                    " or inside it (groups cannot loop)"
                )
            # Members would gain the new parent's roles.
            for scope, grants in _group_role_grants(snapshot, new_parent.id).items():
                require_holds(session, actor, grants, scope, snapshot)
            group.parent_id = new_parent.id
        session.flush()
        ensure_admin_remains(session)
    audit.record(
        session,
        "group.update",
        actor_id=actor_user(actor),
        group=group.name,
        parent=parent,
        clear_parent=clear_parent,
    )
    _changed(session)
    return group


def delete_group(session: Session, group: Group, *, actor: Principal | None = None) -> None:
    """The group and its subgroups go; their members lose what those groups gave, so only
    someone holding all of it may delete them."""
    snapshot = load_snapshot(session)
    for member_group in _subtree(snapshot, group.id):
        _require_holds_per_scope(
            session, actor, _group_role_grants(snapshot, member_group), snapshot
        )
    name = group.name
    with session.begin_nested():
        session.delete(group)
        ensure_admin_remains(session)
    audit.record(session, "group.delete", actor_id=actor_user(actor), group=name)
    _changed(session)


def add_member(
    session: Session, group: Group, user: User, *, actor: Principal | None = None
) -> None:
    snapshot = load_snapshot(session)
    for scope, grants in _group_role_grants(snapshot, group.id).items():
        require_holds(session, actor, grants, scope, snapshot)
    try:
        with session.begin_nested():
            session.execute(insert(group_members), {"group_id": group.id, "user_id": user.id})
    except IntegrityError:
        raise Conflict(f"the user is already in {group.name}") from None
    audit.record(
        session,
        "group.member_add",
        actor_id=actor_user(actor),
        subject_id=user.id,
        group=group.name,
    )
    _changed(session)


def remove_member(
    session: Session, group: Group, user: User, *, actor: Principal | None = None
) -> None:
    """Taking someone out of a group takes what it gives: as for giving (AUTHZ-05), only
    someone who holds it may."""
    snapshot = load_snapshot(session)
    _require_holds_per_scope(session, actor, _group_role_grants(snapshot, group.id), snapshot)
    with session.begin_nested():
        gone = session.execute(
            delete(group_members).where(
                group_members.c.group_id == group.id, group_members.c.user_id == user.id
            )
        )
        if gone.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"the user is not in {group.name}")
        ensure_admin_remains(session)
    audit.record(
        session,
        "group.member_remove",
        actor_id=actor_user(actor),
        subject_id=user.id,
        group=group.name,
    )
    _changed(session)


def members_of(session: Session, group: Group) -> list[User]:
    query = (
        select(User)
        .join(group_members, group_members.c.user_id == User.id)
        .where(group_members.c.group_id == group.id)
        .order_by(User.email)
    )
    return list(session.execute(query).scalars())


# -- assignments ------------------------------------------------------------------------


def assign(
    session: Session,
    role: Role,
    principal: Principal,
    *,
    scope: uuid.UUID | None = None,
    actor: Principal | None = None,
) -> RoleAssignment:
    if actor is not None:
        snapshot = load_snapshot(session)
        require_holds(session, actor, snapshot.role_grants(role.id), scope, snapshot)
    row = RoleAssignment(role_id=role.id, scope_client_pk=scope, **_principal_columns(principal))
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"the {principal.kind} already has the role {role.name}") from None
    audit.record(
        session,
        "role.assign",
        actor_id=actor_user(actor),
        subject_id=principal.id if principal.kind == "user" else None,
        role=role.name,
        principal=principal.kind,
        # A user is the record's subject (erasable); a group or client is named here.
        principal_id=None if principal.kind == "user" else str(principal.id),
        scope=str(scope) if scope else None,
    )
    _changed(session)
    return row


def unassign(
    session: Session, assignment: RoleAssignment, *, actor: Principal | None = None
) -> None:
    """Take a role back. Taking is granting's mirror: only who could give the role may take
    it; and taking it changes its holder, so a user or service account holding anything the
    actor does not hold is refused too (as for disabling them)."""
    snapshot = load_snapshot(session)
    require_holds(
        session,
        actor,
        snapshot.role_grants(assignment.role_id),
        assignment.scope_client_pk,
        snapshot,
    )
    if assignment.user_id is not None:
        require_outranks(session, actor, assignment.user_id)
    elif assignment.client_pk is not None:
        require_outranks_principal(session, actor, Principal("client", assignment.client_pk))
    role = session.get(Role, assignment.role_id)
    with session.begin_nested():
        session.delete(assignment)
        ensure_admin_remains(session)
    audit.record(
        session,
        "role.unassign",
        actor_id=actor_user(actor),
        subject_id=assignment.user_id,
        role=role.name if role else None,
        principal_id=str(assignment.group_id or assignment.client_pk)
        if assignment.user_id is None
        else None,
        scope=str(assignment.scope_client_pk) if assignment.scope_client_pk else None,
    )
    _changed(session)


def give_roles(
    session: Session,
    principal: Principal,
    names: Iterable[str],
    *,
    actor: Principal | None = None,
) -> None:
    """Assign roles by name, globally (an unknown name is InvalidInput)."""
    for role in roles_by_names(session, names):
        assign(session, role, principal, actor=actor)


def find_assignment(
    session: Session, role: Role, principal: Principal, scope: uuid.UUID | None
) -> RoleAssignment:
    column = {
        "user": RoleAssignment.user_id,
        "group": RoleAssignment.group_id,
        "client": RoleAssignment.client_pk,
    }[principal.kind]
    query = select(RoleAssignment).where(
        RoleAssignment.role_id == role.id,
        column == principal.id,
        RoleAssignment.scope_client_pk.is_(None)
        if scope is None
        else RoleAssignment.scope_client_pk == scope,
    )
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"the {principal.kind} does not have the role {role.name} there")
    return row


def _principal_columns(principal: Principal) -> dict[str, uuid.UUID]:
    column = {"user": "user_id", "group": "group_id", "client": "client_pk"}[principal.kind]
    return {column: principal.id}


def actor_user(actor: Principal | None) -> uuid.UUID | None:
    """The audit trail's actor_id: a user's id (a service account is named by
    ``audit.ACTOR_CLIENT``, from the request)."""
    return actor.id if actor is not None and actor.kind == "user" else None


# -- application permissions -------------------------------------------------------------


def declare_permission(
    session: Session,
    client_pk: uuid.UUID,
    name: str,
    *,
    description: str = "",
    in_token: bool = False,
    actor: Principal | None = None,
) -> ClientPermission:
    check_name(name)
    if name.split(":", 1)[0] in IDENTITY_RESOURCES:
        raise InvalidInput(
            f"{name}: the resource {name.split(':', 1)[0]} is identity's own; an application"
            " names its permissions after its own resources"
        )
    row = session.get(ClientPermission, (client_pk, name))
    if row is None:
        row = ClientPermission(client_pk=client_pk, name=name, description=description)
        row.in_token = in_token
        _insert_unique(session, row, f"the client already declares {name}")
    row.description = description
    row.in_token = in_token
    session.flush()
    audit.record(
        session,
        "permission.declare",
        actor_id=actor_user(actor),
        permission=name,
        in_token=in_token,
        scope=str(client_pk),
    )
    _changed(session, changes.CLIENTS)
    return row


def remove_permission(
    session: Session, client_pk: uuid.UUID, name: str, *, actor: Principal | None = None
) -> None:
    row = session.get(ClientPermission, (client_pk, name))
    if row is None:
        raise NotFound(f"the client declares no permission {name!r}")
    session.delete(row)
    session.flush()
    audit.record(
        session,
        "permission.remove",
        actor_id=actor_user(actor),
        permission=name,
        scope=str(client_pk),
    )
    _changed(session, changes.CLIENTS)


def client_permissions(session: Session, client_pk: uuid.UUID) -> list[ClientPermission]:
    query = (
        select(ClientPermission)
        .where(ClientPermission.client_pk == client_pk)
        .order_by(ClientPermission.name)
    )
    return list(session.execute(query).scalars())
