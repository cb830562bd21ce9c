#!/usr/bin/env python3
"""Decisions per second of the policy engine, in one process, on a warm snapshot.

    python bench/rbac.py                  # 10,000 users, 200 roles, 50 groups, 100,000 checks
    python bench/rbac.py --users 100000 --checks 1000000

It builds a synthetic snapshot (roles inheriting in chains, nested groups, users with
direct and group roles, some of them scoped to a client), then times one batch of checks
as /api/v1/authz/check/batch runs them: the pure function over the cached snapshot, no
database, no HTTP. The target (issue 10) is at least 100,000 decisions a second.
"""

# ruff: noqa: S311 - a seeded generator makes the synthetic snapshot repeatable, not secrets
from __future__ import annotations

import argparse
import random
import time
import uuid

from identity.rbac.policy import Grant, GroupNode, RoleNode, Snapshot, check

SCOPED_SHARE = 0.3  # of users' direct grants, the share given for one client only
RESOURCES = ("users", "groups", "invoices", "reports", "orders", "articles", "tickets", "files")
ACTIONS = ("read", "write", "delete", "approve", "export")


def build(users: int, roles: int, groups: int, seed: int = 7) -> tuple[Snapshot, list[uuid.UUID]]:
    rng = random.Random(seed)
    role_ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(roles)]
    role_nodes = {}
    for n, role_id in enumerate(role_ids):
        perms = {f"{rng.choice(RESOURCES)}:{rng.choice(ACTIONS)}" for _ in range(rng.randint(1, 6))}
        if n % 25 == 0:
            perms.add(f"{rng.choice(RESOURCES)}:*")
        parents = tuple(rng.sample(role_ids[:n], min(n, rng.randint(0, 2))))
        role_nodes[role_id] = RoleNode(role_id, f"role-{n}", frozenset(perms), parents)
    group_ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(groups)]
    group_nodes = {
        g: GroupNode(g, f"group-{n}", group_ids[rng.randrange(n)] if n and n % 3 else None)
        for n, g in enumerate(group_ids)
    }
    client = uuid.UUID(int=rng.getrandbits(128))
    grants: dict[uuid.UUID, tuple[Grant, ...]] = {
        g: tuple(Grant(rng.choice(role_ids)) for _ in range(rng.randint(1, 3))) for g in group_ids
    }
    user_ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(users)]
    member_of = {}
    for user in user_ids:
        member_of[user] = tuple(rng.sample(group_ids, 2))
        grants[user] = tuple(
            Grant(rng.choice(role_ids), client if rng.random() < SCOPED_SHARE else None)
            for _ in range(rng.randint(0, 2))
        )
    snapshot = Snapshot(role_nodes, group_nodes, member_of, grants)
    return snapshot, user_ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--roles", type=int, default=200)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--checks", type=int, default=100_000)
    args = parser.parse_args()
    snapshot, users = build(args.users, args.roles, args.groups)
    rng = random.Random(11)
    questions = [
        (rng.choice(users), f"{rng.choice(RESOURCES)}:{rng.choice(ACTIONS)}")
        for _ in range(args.checks)
    ]
    for user, permission in questions:  # warm: every user's holdings memoised once
        check(snapshot, "user", user, permission)
    started = time.perf_counter()
    allowed = sum(check(snapshot, "user", u, p).allowed for u, p in questions)
    elapsed = time.perf_counter() - started
    print(
        f"{args.checks:,} decisions in {elapsed:.3f} s: {args.checks / elapsed:,.0f} decisions/s "
        f"({allowed / args.checks:.0%} allowed; {args.users:,} users, {args.roles} roles, "
        f"{args.groups} groups)"
    )
    cold_snapshot, _ = build(args.users, args.roles, args.groups)
    started = time.perf_counter()
    for user, permission in questions:
        check(cold_snapshot, "user", user, permission)
    cold = time.perf_counter() - started
    print(f"from a cold snapshot (holdings computed on first use): {args.checks / cold:,.0f}/s")


if __name__ == "__main__":
    main()
