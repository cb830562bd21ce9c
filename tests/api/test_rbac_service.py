"""The RBAC store and its rules on a real database: inheritance never loops, groups never
loop, nobody grants more than they hold, an active administrator always remains, one
assignment per role, holder and scope, and every process sees a change at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from identity.exceptions import Conflict, Forbidden, InvalidInput
from identity.rbac import service as rbac
from identity.rbac.policy import check
from identity.rbac.store import load_snapshot


@pytest.fixture
def session(app: Flask, users: dict[str, uuid.UUID]) -> Iterator[Session]:
    from identity.extensions import db

    with app.app_context():
        rbac.ensure_builtin_roles(db.session)
        db.session.commit()  # SQLite: hold no write lock while fixtures add users
        yield db.session
        db.session.rollback()


@pytest.fixture
def users(app: Flask, make_user: Any) -> dict[str, uuid.UUID]:
    return {
        "root": make_user("root@example.org", roles=("admin",)),
        "mia": make_user("mia@example.org", roles=("user-manager",)),
        "pat": make_user("pat@example.org"),
    }


def user(kind_id: uuid.UUID) -> rbac.Principal:
    return rbac.Principal("user", kind_id)


def test_role_inheritance_cannot_loop(session: Session) -> None:
    a = rbac.create_role(session, "a", permissions=["x:read"])
    b = rbac.create_role(session, "b", parents=["a"])
    rbac.create_role(session, "c", parents=["b"])
    with pytest.raises(InvalidInput, match="cannot loop"):
        rbac.update_role(session, a, parents=["c"])
    with pytest.raises(InvalidInput, match="itself"):
        rbac.update_role(session, b, parents=["b"])


def test_groups_cannot_loop(session: Session) -> None:
    top = rbac.create_group(session, "top")
    rbac.create_group(session, "mid", parent="top")
    rbac.create_group(session, "low", parent="mid")
    with pytest.raises(InvalidInput, match="cannot loop"):
        rbac.update_group(session, top, parent="low")


def test_bad_names_are_refused(session: Session) -> None:
    with pytest.raises(InvalidInput):
        rbac.create_role(session, "Has Spaces")
    with pytest.raises(InvalidInput):
        rbac.create_role(session, "ok", permissions=["not a permission"])
    rbac.create_role(session, "dup")
    with pytest.raises(Conflict):
        rbac.create_role(session, "dup")


def test_AUTHZ_05_nobody_grants_more_than_they_hold(
    session: Session, users: dict[str, uuid.UUID]
) -> None:
    """A user manager can give user-manager (held) but not admin, nor put a permission it
    lacks into a role, nor add someone to a group whose roles it lacks."""
    mia = user(users["mia"])
    manager = rbac.role_by_name(session, "user-manager")
    rbac.assign(session, manager, user(users["pat"]), actor=mia)
    with pytest.raises(Forbidden, match="do not hold"):
        rbac.assign(session, rbac.role_by_name(session, "admin"), user(users["pat"]), actor=mia)
    with pytest.raises(Forbidden, match="keys:write"):
        rbac.create_role(session, "keyholder", permissions=["keys:write"], actor=mia)
    admins = rbac.create_group(session, "admins")
    rbac.assign(session, rbac.role_by_name(session, "admin"), rbac.Principal("group", admins.id))
    with pytest.raises(Forbidden):
        rbac.add_member(session, admins, session.get(rbac.User, users["pat"]), actor=mia)
    # The operator (actor None) may do anything.
    rbac.add_member(session, admins, session.get(rbac.User, users["pat"]))


def test_AUTHZ_08_the_last_admin_remains(session: Session, users: dict[str, uuid.UUID]) -> None:
    admin = rbac.role_by_name(session, "admin")
    only = rbac.find_assignment(session, admin, user(users["root"]), None)
    with pytest.raises(Conflict, match="no active administrator"):
        rbac.unassign(session, only)
    # With a second admin (through a group) the first may go.
    ops = rbac.create_group(session, "ops")
    rbac.assign(session, admin, rbac.Principal("group", ops.id))
    rbac.add_member(session, ops, session.get(rbac.User, users["pat"]))
    rbac.unassign(session, only)
    with pytest.raises(Conflict):
        rbac.remove_member(session, ops, session.get(rbac.User, users["pat"]))
    with pytest.raises(Conflict, match="built in"):
        rbac.delete_role(session, admin)


def test_one_assignment_per_role_holder_and_scope(
    session: Session, users: dict[str, uuid.UUID], make_client: Any
) -> None:
    """The database refuses a duplicate (partial unique indexes), globally and per client."""
    from sqlalchemy import select

    from identity.models.oauth import Client

    client_id = make_client("docs").client_id  # before this session writes (SQLite lock)
    scope = session.execute(select(Client.id).where(Client.client_id == client_id)).scalar_one()
    role = rbac.create_role(session, "editor", permissions=["docs:write"])
    pat = user(users["pat"])
    rbac.assign(session, role, pat)
    with pytest.raises(Conflict):
        rbac.assign(session, role, pat)
    rbac.assign(session, role, pat, scope=scope)  # the same role for one client: distinct
    with pytest.raises(Conflict):
        rbac.assign(session, role, pat, scope=scope)


def test_changes_reach_the_cached_snapshot(
    app: Flask, session: Session, users: dict[str, uuid.UUID]
) -> None:
    """A committed change bumps the rbac generation: the process's cache reloads
    (AUTHZ-06)."""
    rt = app.extensions["identity"]
    before = rt.rbac.get(session)
    assert not check(before, "user", users["pat"], "reports:read").allowed
    rbac.create_role(session, "reporter", permissions=["reports:read"])
    rbac.give_roles(session, user(users["pat"]), ["reporter"])
    session.commit()
    rt.changes.changed_here({"rbac"})  # what the unit of work does at a request's commit
    after = rt.rbac.get(session)
    assert after is not before
    assert check(after, "user", users["pat"], "reports:read").allowed


def test_snapshot_loads_builtin_permissions_from_code(
    session: Session, users: dict[str, uuid.UUID]
) -> None:
    snapshot = load_snapshot(session)
    assert check(snapshot, "user", users["root"], "anything:goes").allowed
    assert check(snapshot, "user", users["mia"], "users:write").allowed
    assert not check(snapshot, "user", users["mia"], "keys:write").allowed
