"""What the role, group and decision pages share: form input read through the admin API's
models, a service's refusal shown on its form, role holders by name, giving and taking a
role (the admin role asks for a fresh proof), and the inheritance tree the roles page draws.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from identity.admin.console import check_sensitive, operator
from identity.api.common import decode_cursor, encode_cursor
from identity.api.roles import client_by_id
from identity.exceptions import IdentityError, InvalidInput, NotFound
from identity.extensions import db
from identity.models.oauth import Client
from identity.models.rbac import Group, Role, RoleAssignment
from identity.models.user import User
from identity.rbac import service as rbac
from identity.rbac.permissions import ADMIN_ROLE
from identity.rbac.policy import Snapshot

M = TypeVar("M", bound=BaseModel)
PAGE = 50


def parse(model: type[M], **data: Any) -> M:
    """The form's values through the admin API's input model; its complaints as one line."""
    try:
        return model(**data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'input'}: {e['msg']}"
            for e in error.errors()
        )
        raise InvalidInput(problems) from None


def lines(text: str | None) -> list[str]:
    """Entries typed one per line (commas and spaces separate too)."""
    return [word for word in (text or "").replace(",", " ").split() if word]


def refused(error: IdentityError) -> tuple[str, int]:
    """What to say on the form when a service refused, and the status (a name typed in the
    form that names nothing is the form's error: 400). The service ran in ``savepoint()``,
    so what it had begun is undone; the rest of the request (a failed proof's audit record)
    is kept."""
    status = 400 if isinstance(error, NotFound) else error.status_code
    return error.message, status


@contextmanager
def savepoint() -> Iterator[Session]:
    """Run service calls so that a refusal undoes whatever they had flushed."""
    session = db.session()
    with session.begin_nested():
        yield session


# Role holders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """One assignment, named for people: who holds which role, and where."""

    id: uuid.UUID
    role: str
    kind: str  # user, group, client
    holder: str  # an email, a group name, a client id
    scope: str | None  # the client id it is limited to; None: everywhere
    created_at: datetime
    user_id: uuid.UUID | None = None  # a user's page


def holdings(
    session: Session, *, role: Role | None = None, group: Group | None = None
) -> tuple[list[Holding], str | None]:
    """A page of assignments (of a role, or to a group), oldest first, and the next cursor."""
    query = select(RoleAssignment).order_by(RoleAssignment.created_at, RoleAssignment.id)
    if role is not None:
        query = query.where(RoleAssignment.role_id == role.id)
    if group is not None:
        query = query.where(RoleAssignment.group_id == group.id)
    after = decode_cursor(request.args.get("cursor") or None, 2)
    if after is not None:
        try:
            moment, last = datetime.fromisoformat(after[0]), uuid.UUID(after[1])
        except ValueError:
            raise InvalidInput("The cursor is not valid: follow the next page link.") from None
        query = query.where(
            tuple_(RoleAssignment.created_at, RoleAssignment.id) > tuple_(moment, last)  # type: ignore[arg-type]
        )
    rows = list(session.execute(query.limit(PAGE + 1)).scalars())
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    out = [_holding(session, row) for row in rows]
    cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
    return out, cursor


def _holding(session: Session, row: RoleAssignment) -> Holding:
    role = session.get(Role, row.role_id)
    if row.user_id is not None:
        user = session.get(User, row.user_id)
        kind, holder = "user", user.email if user else str(row.user_id)
    elif row.group_id is not None:
        group = session.get(Group, row.group_id)
        kind, holder = "group", group.name if group else str(row.group_id)
    else:
        client = session.get(Client, row.client_pk)
        kind, holder = "client", client.client_id if client else str(row.client_pk)
    scope = session.get(Client, row.scope_client_pk) if row.scope_client_pk else None
    return Holding(
        id=row.id,
        role=role.name if role else "",
        kind=kind,
        holder=holder,
        scope=scope.client_id if scope else None,
        created_at=row.created_at,
        user_id=row.user_id,
    )


def give(
    session: Session, role_name: str, holder: rbac.Principal, scope_client_id: str | None
) -> Role:
    """Give a role as POST /api/v1/assignments does; the admin role needs a fresh proof
    (``reauth`` in the form). Raises InvalidInput with the proof's complaint."""
    role = rbac.role_by_name(session, role_name)
    if role.name == ADMIN_ROLE:
        problem = check_sensitive(request.form.get("reauth"), None, None)
        if problem:
            raise InvalidInput(problem)
    scope = client_by_id(session, scope_client_id).id if scope_client_id else None
    with savepoint():  # after the proof: a failed one stays audited
        rbac.assign(session, role, holder, scope=scope, actor=operator().principal)
    return role


def take(
    session: Session,
    assignment_id: uuid.UUID,
    *,
    role: Role | None = None,
    group: Group | None = None,
) -> Holding:
    """Take a role back as DELETE /api/v1/assignments/{id} does (an assignment of this role,
    or to this group: the page it was taken on)."""
    row = session.get(RoleAssignment, assignment_id)
    if (
        row is None
        or (role is not None and row.role_id != role.id)
        or (group is not None and row.group_id != group.id)
    ):
        raise NotFound(f"no assignment with id {assignment_id}")
    taken = _holding(session, row)
    with savepoint():
        rbac.unassign(session, row, actor=operator().principal)
    return taken


# The inheritance tree ----------------------------------------------------------------------


@dataclass
class Branch:
    """A role in the inheritance tree, with the roles that inherit it beneath."""

    name: str
    builtin: bool
    parents: list[str]
    children: list[Branch] = field(default_factory=list)
    repeated: bool = False  # drawn in full elsewhere (it inherits more than one role)


def inheritance(snapshot: Snapshot) -> list[Branch]:
    """Every role under the roles it inherits: the roots inherit nothing. A role with two
    parents appears under both, in full the first time."""
    names = {role.id: role.name for role in snapshot.roles.values()}
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for role in snapshot.roles.values():
        for parent in role.parents:
            children.setdefault(parent, []).append(role.id)
    drawn: set[uuid.UUID] = set()

    def branch(role_id: uuid.UUID, path: frozenset[uuid.UUID]) -> Branch:
        node = snapshot.roles[role_id]
        out = Branch(node.name, node.builtin, sorted(names[p] for p in node.parents if p in names))
        if role_id in drawn or role_id in path:
            out.repeated = True
            return out
        drawn.add(role_id)
        for child in sorted(children.get(role_id, ()), key=lambda c: names[c]):
            out.children.append(branch(child, path | {role_id}))
        return out

    roots = sorted(
        (r for r in snapshot.roles.values() if not any(p in names for p in r.parents)),
        key=lambda r: r.name,
    )
    return [branch(root.id, frozenset()) for root in roots]
