"""The policy decision: a pure function over a snapshot of roles, groups and assignments.

Deny by default. An allow carries the path that grants it (user -> group -> parent group
-> role -> parent role -> permission); a deny names what is missing and the roles that
would grant it. Nothing here touches the database: ``identity.rbac.store`` loads snapshots.

A grant counts for a check when it is global, or scoped to the client the check is about.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from identity.rbac.permissions import WILDCARD, covering

PrincipalKind = Literal["user", "group", "client"]
MAX_CANDIDATES = 5
# Principals whose holdings a snapshot memoises; past this the memo starts over (a snapshot
# is replaced on every change anyway).
MAX_MEMO = 100_000


@dataclass(frozen=True)
class RoleNode:
    id: uuid.UUID
    name: str
    permissions: frozenset[str]
    parents: tuple[uuid.UUID, ...] = ()
    builtin: bool = False


@dataclass(frozen=True)
class GroupNode:
    id: uuid.UUID
    name: str
    parent: uuid.UUID | None = None


@dataclass(frozen=True)
class Grant:
    """A role given to a principal, globally (scope None) or for one client."""

    role: uuid.UUID
    scope: uuid.UUID | None = None


@dataclass(frozen=True)
class Step:
    """One hop of an explanation: ``kind`` is user, client, group, role or permission."""

    kind: str
    name: str
    scope: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "name": self.name}
        if self.scope is not None:
            out["scope"] = str(self.scope)
        return out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: str
    path: tuple[Step, ...] = ()
    candidates: tuple[tuple[str, str], ...] = ()  # (role, the grant in it that would do)

    @property
    def reason(self) -> str:
        if self.allowed:
            return " -> ".join(f"{s.kind} {s.name}" for s in self.path)
        if self.candidates:
            roles = ", ".join(f"{role} (holds {grant})" for role, grant in self.candidates)
            return f"no role of the subject grants {self.permission}; it is in: {roles}"
        return f"no role grants {self.permission}"

    def explanation(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        if self.allowed:
            out["path"] = [step.as_dict() for step in self.path]
        else:
            out["missing"] = self.permission
            out["candidates"] = [{"role": r, "grants": g} for r, g in self.candidates]
        return out


# What a principal holds: for each grant (``*``, ``users:*``, ``users:read``) the shortest
# path to it. The snapshot memoises these, so a warm check is three dictionary lookups.
Holdings = Mapping[str, tuple[Step, ...]]


@dataclass
class Snapshot:
    roles: Mapping[uuid.UUID, RoleNode]
    groups: Mapping[uuid.UUID, GroupNode]
    member_of: Mapping[uuid.UUID, tuple[uuid.UUID, ...]]  # user id -> group ids
    grants: Mapping[uuid.UUID, tuple[Grant, ...]]  # user, group or client pk -> grants
    names: Mapping[uuid.UUID, str] = field(default_factory=dict)  # principals, scopes
    generation: int = 0
    _role_closure: dict[uuid.UUID, dict[str, tuple[Step, ...]]] = field(
        default_factory=dict, repr=False
    )
    _holdings: dict[tuple[uuid.UUID, uuid.UUID | None], Holdings] = field(
        default_factory=dict, repr=False
    )
    _role_names: dict[tuple[uuid.UUID, uuid.UUID | None], tuple[str, ...]] = field(
        default_factory=dict, repr=False
    )
    # For denials: each grant, with the roles that hold it (and how many grants they hold).
    _granters: dict[str, list[tuple[int, str]]] | None = field(default=None, repr=False)
    _candidates: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, repr=False)

    def what_if(
        self,
        principal: uuid.UUID,
        *,
        add_grants: Iterable[Grant] = (),
        remove_grants: Iterable[Grant] = (),
        add_groups: Iterable[uuid.UUID] = (),
        remove_groups: Iterable[uuid.UUID] = (),
    ) -> Snapshot:
        """A copy in which the principal has these grants and group memberships added or
        removed: evaluating it changes nothing anywhere."""
        grants = [g for g in self.grants.get(principal, ()) if g not in set(remove_grants)]
        grants += [g for g in add_grants if g not in grants]
        groups = [g for g in self.member_of.get(principal, ()) if g not in set(remove_groups)]
        groups += [g for g in add_groups if g not in groups]
        return Snapshot(
            roles=self.roles,
            groups=self.groups,
            member_of={**self.member_of, principal: tuple(groups)},
            grants={**self.grants, principal: tuple(grants)},
            names=self.names,
            generation=self.generation,
            _role_closure=self._role_closure,  # roles are unchanged: share their closure
        )

    def role_named(self, name: str) -> RoleNode | None:
        for role in self.roles.values():
            if role.name == name:
                return role
        return None

    def group_chain(self, group_id: uuid.UUID) -> list[GroupNode]:
        """The group and its ancestors, nearest first (a cycle, which the store refuses,
        would end the walk rather than loop)."""
        chain: list[GroupNode] = []
        seen: set[uuid.UUID] = set()
        current: uuid.UUID | None = group_id
        while current is not None and current not in seen and current in self.groups:
            seen.add(current)
            chain.append(self.groups[current])
            current = self.groups[current].parent
        return chain

    def role_grants(self, role_id: uuid.UUID) -> dict[str, tuple[Step, ...]]:
        """Every grant the role holds, itself or through parents, with the shortest path of
        roles to it (breadth first)."""
        cached = self._role_closure.get(role_id)
        if cached is not None:
            return cached
        result: dict[str, tuple[Step, ...]] = {}
        queue: list[tuple[uuid.UUID, tuple[Step, ...]]] = [(role_id, ())]
        seen: set[uuid.UUID] = set()
        while queue:
            current, path = queue.pop(0)
            if current in seen or current not in self.roles:
                continue
            seen.add(current)
            node = self.roles[current]
            here = (*path, Step("role", node.name))
            for grant in sorted(node.permissions):
                result.setdefault(grant, (*here, Step("permission", grant)))
            queue.extend((parent, here) for parent in node.parents)
        self._role_closure[role_id] = result
        return result

    def sources(
        self, kind: PrincipalKind, principal: uuid.UUID
    ) -> list[tuple[tuple[Step, ...], uuid.UUID]]:
        """Where a principal's grants come from: itself, then (a user) its groups and their
        ancestors, each with the path that reaches it."""
        me = Step(kind, self.names.get(principal, str(principal)))
        out: list[tuple[tuple[Step, ...], uuid.UUID]] = [((me,), principal)]
        if kind == "user":
            for group_id in self.member_of.get(principal, ()):
                path: tuple[Step, ...] = (me,)
                for group in self.group_chain(group_id):
                    path = (*path, Step("group", group.name))
                    out.append((path, group.id))
        return out

    def holdings(
        self, kind: PrincipalKind, principal: uuid.UUID, scope: uuid.UUID | None = None
    ) -> Holdings:
        key = (principal, scope)
        cached = self._holdings.get(key)
        if cached is not None:
            return cached
        held: dict[str, tuple[Step, ...]] = {}
        for prefix, source in self.sources(kind, principal):
            for grant in self.grants.get(source, ()):
                if grant.scope is not None and grant.scope != scope:
                    continue
                for name, path in self.role_grants(grant.role).items():
                    first = replace(path[0], scope=grant.scope)
                    candidate = (*prefix, first, *path[1:])
                    if name not in held or len(candidate) < len(held[name]):
                        held[name] = candidate
        if len(self._holdings) > MAX_MEMO:
            self._holdings.clear()
        self._holdings[key] = held
        return held

    def ancestry(self, role_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """The roles and every role they inherit."""
        seen: set[uuid.UUID] = set()
        queue = list(role_ids)
        while queue:
            role_id = queue.pop()
            if role_id in seen or role_id not in self.roles:
                continue
            seen.add(role_id)
            queue.extend(self.roles[role_id].parents)
        return seen

    def role_names(
        self, kind: PrincipalKind, principal: uuid.UUID, scope: uuid.UUID | None = None
    ) -> list[str]:
        """Every role the principal has for this scope: direct, through groups, inherited.
        Memoised like ``holdings``: every token issued carries them (the roles claim)."""
        key = (principal, scope)
        cached = self._role_names.get(key)
        if cached is None:
            direct = (
                grant.role
                for _, source in self.sources(kind, principal)
                for grant in self.grants.get(source, ())
                if grant.scope is None or grant.scope == scope
            )
            cached = tuple(sorted(self.roles[role_id].name for role_id in self.ancestry(direct)))
            if len(self._role_names) > MAX_MEMO:
                self._role_names.clear()
            self._role_names[key] = cached
        return list(cached)


def superusers(snapshot: Snapshot) -> frozenset[uuid.UUID]:
    """Every principal (user, group or service account) holding ``*`` globally. A change
    that adds one gives someone everything; the admin console asks for a fresh proof first
    (identity.admin.proofs)."""
    principals = set(snapshot.grants) | set(snapshot.member_of)
    # holdings() as a user: a group or a client has no memberships, only its own grants.
    return frozenset(p for p in principals if WILDCARD in snapshot.holdings("user", p))


def check(
    snapshot: Snapshot,
    kind: PrincipalKind,
    principal: uuid.UUID,
    permission: str,
    scope: uuid.UUID | None = None,
) -> Decision:
    """Whether the principal holds ``permission`` (globally, or for client ``scope``)."""
    held = snapshot.holdings(kind, principal, scope)
    for grant in covering(permission):
        path = held.get(grant)
        if path is not None:
            return Decision(True, permission, path)
    return Decision(False, permission, candidates=_candidates(snapshot, permission))


def holds_all(
    snapshot: Snapshot,
    kind: PrincipalKind,
    principal: uuid.UUID,
    grants: Iterable[str],
    scope: uuid.UUID | None = None,
) -> list[str]:
    """The grants among ``grants`` the principal does not hold (empty: holds them all)."""
    held = snapshot.holdings(kind, principal, scope)
    return sorted(g for g in set(grants) if not any(c in held for c in covering(g)))


def holds_any(
    snapshot: Snapshot,
    kind: PrincipalKind,
    principal: uuid.UUID,
    permissions: Iterable[str],
    scope: uuid.UUID | None = None,
) -> bool:
    """Whether the principal holds at least one of ``permissions``."""
    held = snapshot.holdings(kind, principal, scope)
    return any(grant in held for p in permissions for grant in covering(p))


def _candidates(snapshot: Snapshot, permission: str) -> tuple[tuple[str, str], ...]:
    """Roles that would grant the permission, least privilege first: an exact grant before
    ``resource:*`` before ``*``, then the role holding fewer grants. Memoised per
    permission: a snapshot never changes."""
    cached = snapshot._candidates.get(permission)
    if cached is not None:
        return cached
    if snapshot._granters is None:
        granters: dict[str, list[tuple[int, str]]] = {}
        for role in snapshot.roles.values():
            grants = snapshot.role_grants(role.id)
            for grant in grants:
                granters.setdefault(grant, []).append((len(grants), role.name))
        snapshot._granters = granters
    found: list[tuple[int, int, str, str]] = []
    seen: set[str] = set()
    for breadth, grant in enumerate(covering(permission)):
        for size, name in snapshot._granters.get(grant, ()):
            if name not in seen:
                seen.add(name)
                found.append((breadth, size, name, grant))
    found.sort()
    result = tuple((name, grant) for _, _, name, grant in found[:MAX_CANDIDATES])
    if len(snapshot._candidates) < MAX_MEMO:
        snapshot._candidates[permission] = result
    return result
