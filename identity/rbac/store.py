"""Loading the policy snapshot from the database, and the per-process snapshot cache.

Every change to roles, groups, memberships or assignments publishes ``changes.RBAC``
(identity.rbac.service), so each process's cache reloads within the change feed's delay
(LISTEN/NOTIFY on PostgreSQL, a quarter-second poll on SQLite), and never trusts itself
longer than ``changes.FALLBACK_TTL`` while its feed is not confirmed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import changes
from identity.models.oauth import Client
from identity.models.rbac import Group, Role, RoleAssignment, group_members, role_parents
from identity.models.rbac import role_permissions as role_permissions_table
from identity.rbac.permissions import BUILTIN_ROLES
from identity.rbac.policy import Grant, GroupNode, RoleNode, Snapshot

# A warm snapshot is trusted this long while the change feed is confirmed (a safety net:
# the feed, not this, is what makes changes visible within a second).
CACHE_TTL = 300.0


def load_snapshot(session: Session, generation: int = 0) -> Snapshot:
    """Everything a decision needs, in six queries."""
    permissions: dict[uuid.UUID, set[str]] = defaultdict(set)
    for role_id, permission in session.execute(
        select(role_permissions_table.c.role_id, role_permissions_table.c.permission)
    ):
        permissions[role_id].add(permission)
    parents: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for role_id, parent_id in session.execute(
        select(role_parents.c.role_id, role_parents.c.parent_id)
    ):
        parents[role_id].append(parent_id)
    roles = {}
    for role in session.execute(select(Role)).scalars():
        held = frozenset(permissions[role.id])
        if role.builtin and role.name in BUILTIN_ROLES:
            held = BUILTIN_ROLES[role.name][1]  # identity's own roles: the code decides
        roles[role.id] = RoleNode(
            role.id, role.name, held, tuple(sorted(parents[role.id])), role.builtin
        )
    groups = {
        g.id: GroupNode(g.id, g.name, g.parent_id) for g in session.execute(select(Group)).scalars()
    }
    member_of: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for group_id, user_id in session.execute(
        select(group_members.c.group_id, group_members.c.user_id)
    ):
        member_of[user_id].append(group_id)
    grants: dict[uuid.UUID, list[Grant]] = defaultdict(list)
    for row in session.execute(select(RoleAssignment)).scalars():
        principal = row.user_id or row.group_id or row.client_pk
        assert principal is not None  # the one_principal check constraint
        grants[principal].append(Grant(row.role_id, row.scope_client_pk))
    names: dict[uuid.UUID, str] = {
        pk: client_id for pk, client_id in session.execute(select(Client.id, Client.client_id))
    }
    return Snapshot(
        roles=roles,
        groups=groups,
        member_of={user: tuple(sorted(ids)) for user, ids in member_of.items()},
        grants={principal: tuple(items) for principal, items in grants.items()},
        names=names,
        generation=generation,
    )


class SnapshotCache:
    """This process's snapshot, replaced whole when the change feed says it is stale."""

    def __init__(self, feed: changes.ChangeFeed | None = None) -> None:
        self.feed = feed or changes.ChangeFeed()
        self._current: tuple[float, int, Snapshot] | None = None
        self._lock = threading.Lock()

    def get(self, session: Session) -> Snapshot:
        generation = self.feed.generation(changes.RBAC)
        current = self._current
        now = time.monotonic()
        if (
            current is not None
            and current[1] == generation
            and now - current[0] < self.feed.ttl(CACHE_TTL)
        ):
            return current[2]
        with self._lock:  # one load at a time; the others then use it
            current = self._current
            if current is not None and current[1] == generation and current[0] >= now:
                return current[2]
            snapshot = load_snapshot(session, generation)
            self._current = (time.monotonic(), generation, snapshot)
            return snapshot

    def invalidate(self) -> None:
        self._current = None
