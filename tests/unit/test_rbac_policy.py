"""The policy engine on hand-built snapshots: deny by default, wildcards, inheritance,
groups, scopes, and explanations that name the path or what is missing."""

from __future__ import annotations

import uuid

import pytest

from identity.exceptions import InvalidInput
from identity.rbac.permissions import BUILTIN_ROLES, check_grantable, check_name, covering
from identity.rbac.policy import Grant, GroupNode, RoleNode, Snapshot, check, holds_all

U = {n: uuid.uuid4() for n in ("alice", "bob", "carol", "svc", "billing", "crm")}


def role(name: str, *perms: str, parents: tuple[uuid.UUID, ...] = ()) -> RoleNode:
    return RoleNode(uuid.uuid5(uuid.NAMESPACE_DNS, name), name, frozenset(perms), parents)


viewer = role("viewer", "invoices:read")
approver = role("approver", "invoices:approve", parents=(viewer.id,))
ops = role("ops", "users:*")
root = role("root", "*")
ROLES = {r.id: r for r in (viewer, approver, ops, root)}
staff = GroupNode(uuid.uuid4(), "staff")
finance = GroupNode(uuid.uuid4(), "finance", parent=staff.id)


def snapshot(**grants: tuple[Grant, ...]) -> Snapshot:
    by_principal = {
        U.get(k) or {"staff": staff.id, "finance": finance.id}[k]: v for k, v in grants.items()
    }
    return Snapshot(
        roles=ROLES,
        groups={staff.id: staff, finance.id: finance},
        member_of={U["bob"]: (finance.id,)},
        grants=by_principal,
        names={U["billing"]: "billing-app", U["svc"]: "svc-client"},
    )


def test_deny_by_default_names_the_roles_that_would_grant() -> None:
    """Nobody holds anything without a grant; the deny lists the smallest candidates."""
    decision = check(snapshot(), "user", U["alice"], "invoices:read")
    assert not decision.allowed
    assert decision.candidates[0] == ("viewer", "invoices:read")  # least privilege first
    assert ("root", "*") in decision.candidates
    assert decision.explanation()["missing"] == "invoices:read"
    assert "no role of the subject grants invoices:read" in decision.reason


def test_inherited_permission_shows_the_role_chain() -> None:
    """approver inherits viewer: the path runs user -> approver -> viewer -> permission."""
    s = snapshot(alice=(Grant(approver.id),))
    decision = check(s, "user", U["alice"], "invoices:read")
    assert decision.allowed
    assert [(step.kind, step.name) for step in decision.path] == [
        ("user", str(U["alice"])),
        ("role", "approver"),
        ("role", "viewer"),
        ("permission", "invoices:read"),
    ]
    assert not check(s, "user", U["alice"], "invoices:delete").allowed


def test_nested_group_grants_reach_members_of_the_subgroup() -> None:
    """bob is in finance, inside staff; staff's role reaches him through both groups."""
    s = snapshot(staff=(Grant(ops.id),))
    decision = check(s, "user", U["bob"], "users:write")
    assert decision.allowed
    assert [step.name for step in decision.path] == [
        str(U["bob"]),
        "finance",
        "staff",
        "ops",
        "users:*",
    ]
    assert not check(s, "user", U["alice"], "users:write").allowed  # not a member


@pytest.mark.parametrize(
    ("grant", "asked", "allowed"),
    [
        ("users:*", "users:read", True),
        ("users:*", "users:*", True),
        ("users:*", "groups:read", False),
        ("users:*", "*", False),
        ("*", "anything:at-all", True),
        ("*", "*", True),
        ("users:read", "users:write", False),
        ("users:read", "users:*", False),
    ],
)
def test_wildcards(grant: str, asked: str, allowed: bool) -> None:
    """``resource:*`` covers its resource's actions; ``*`` covers everything."""
    r = role("r", grant)
    s = Snapshot(roles={r.id: r}, groups={}, member_of={}, grants={U["alice"]: (Grant(r.id),)})
    assert check(s, "user", U["alice"], asked).allowed is allowed


def test_a_scoped_grant_counts_only_for_its_client() -> None:
    """An application role given for billing does not reach crm, nor a global check."""
    s = snapshot(alice=(Grant(approver.id, scope=U["billing"]),))
    allowed = check(s, "user", U["alice"], "invoices:approve", scope=U["billing"])
    assert allowed.allowed
    assert allowed.path[1].scope == U["billing"]
    assert not check(s, "user", U["alice"], "invoices:approve", scope=U["crm"]).allowed
    assert not check(s, "user", U["alice"], "invoices:approve").allowed


def test_a_global_grant_counts_in_every_scope() -> None:
    s = snapshot(alice=(Grant(viewer.id),))
    assert check(s, "user", U["alice"], "invoices:read", scope=U["crm"]).allowed


def test_service_account_grants() -> None:
    """A client's service account holds what is assigned to it, nothing through groups."""
    s = snapshot(svc=(Grant(ops.id),))
    decision = check(s, "client", U["svc"], "users:read")
    assert decision.allowed
    assert decision.path[0].name == "svc-client"


def test_shortest_path_wins() -> None:
    """Held directly and through a group: the explanation shows the direct, shorter one."""
    s = snapshot(bob=(Grant(viewer.id),), staff=(Grant(viewer.id),))
    decision = check(s, "user", U["bob"], "invoices:read")
    assert [step.kind for step in decision.path] == ["user", "role", "permission"]


def test_role_names_include_groups_and_parents() -> None:
    s = snapshot(bob=(Grant(approver.id),), staff=(Grant(ops.id, scope=U["crm"]),))
    assert s.role_names("user", U["bob"]) == ["approver", "viewer"]
    assert s.role_names("user", U["bob"], U["crm"]) == ["approver", "ops", "viewer"]


def test_holds_all_lists_what_is_missing() -> None:
    s = snapshot(alice=(Grant(ops.id),))
    assert holds_all(s, "user", U["alice"], ["users:read", "users:*"]) == []
    assert holds_all(s, "user", U["alice"], ["users:read", "*", "groups:read"]) == [
        "*",
        "groups:read",
    ]


def test_a_cycle_in_the_data_does_not_hang() -> None:
    """The store refuses cycles; the engine still terminates if one slipped in."""
    a_id, b_id = uuid.uuid4(), uuid.uuid4()
    a = RoleNode(a_id, "a", frozenset({"x:read"}), (b_id,))
    b = RoleNode(b_id, "b", frozenset({"y:read"}), (a_id,))
    g1, g2 = uuid.uuid4(), uuid.uuid4()
    s = Snapshot(
        roles={a_id: a, b_id: b},
        groups={g1: GroupNode(g1, "g1", g2), g2: GroupNode(g2, "g2", g1)},
        member_of={U["alice"]: (g1,)},
        grants={g2: (Grant(a_id),)},
    )
    assert check(s, "user", U["alice"], "y:read").allowed


@pytest.mark.parametrize("name", ["users:read", "invoices:approve", "a.b:c-d_e"])
def test_permission_names(name: str) -> None:
    assert check_name(name) == name
    assert check_grantable(name) == name


@pytest.mark.parametrize(
    "name", ["users", "Users:read", "users:", ":read", "a:b:c", "*", "x:*", " users:read", 7]
)
def test_bad_permission_names(name: object) -> None:
    with pytest.raises(InvalidInput):
        check_name(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["*", "users:*", "users:read"])
def test_grantable(name: str) -> None:
    assert check_grantable(name) == name


@pytest.mark.parametrize("name", ["**", "*:read", "users:**", "users"])
def test_not_grantable(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_grantable(name)


def test_covering() -> None:
    assert covering("users:read") == ("users:read", "users:*", "*")
    assert covering("users:*") == ("users:*", "*")
    assert covering("*") == ("*",)


def test_builtin_roles() -> None:
    """admin holds everything; the auditor only reads; the user manager cannot touch keys."""
    assert BUILTIN_ROLES["admin"][1] == {"*"}
    auditor = BUILTIN_ROLES["auditor"][1]
    assert "audit:read" in auditor
    assert all(p.endswith(":read") or p == "authz:check" for p in auditor)
    manager = BUILTIN_ROLES["user-manager"][1]
    assert "users:*" in manager
    assert not {"keys:write", "roles:write", "*"} & manager
