"""The decision API: may this subject do that? With the reason, in batches, or as if
roles or group memberships changed (nothing is changed)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field, model_validator
from sqlalchemy.orm import Session

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Input, Output
from identity.api.operations import operation
from identity.exceptions import NotFound
from identity.extensions import db
from identity.rbac.permissions import Permission, check_grantable
from identity.rbac.policy import Grant, PrincipalKind, Snapshot, check
from identity.rbac.service import group_by_name, role_by_name
from identity.runtime import runtime

MAX_BATCH = 1000


class Subject(Input):
    """Exactly one of user_id and client_id (a client's service account)."""

    user_id: uuid.UUID | None = None
    client_id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _one(self) -> Subject:
        if (self.user_id is None) == (self.client_id is None):
            raise ValueError("give exactly one of user_id and client_id")
        return self


class CheckRequest(Input):
    subject: Subject
    permission: str = Field(max_length=128, examples=["users:read"])
    client_id: str | None = Field(
        None, max_length=100, description="Check within this client (application roles)."
    )


class CheckResult(Output):
    allowed: bool
    permission: str
    explanation: dict[str, Any]


class BatchRequest(Input):
    checks: list[CheckRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(Output):
    results: list[CheckResult]


class RoleChange(Input):
    role: str = Field(max_length=64)
    client_id: str | None = Field(None, max_length=100, description="Only for this client.")


class Changes(Input):
    add_roles: list[RoleChange] = Field(default_factory=list, max_length=100)
    remove_roles: list[RoleChange] = Field(default_factory=list, max_length=100)
    add_groups: list[str] = Field(default_factory=list, max_length=100)
    remove_groups: list[str] = Field(default_factory=list, max_length=100)


class WhatIfRequest(CheckRequest):
    changes: Changes


class WhatIfResult(Output):
    before: CheckResult
    after: CheckResult


def principal_of(snapshot: Snapshot, subject: Subject) -> tuple[PrincipalKind, uuid.UUID]:
    if subject.user_id is not None:
        return "user", subject.user_id
    return "client", client_pk(snapshot, subject.client_id)


def client_pk(snapshot: Snapshot, client_id: str | None) -> uuid.UUID:
    for pk, name in snapshot.names.items():
        if name == client_id:
            return pk
    raise NotFound(f"no client {client_id!r}")


def evaluate(snapshot: Snapshot, request: CheckRequest) -> CheckResult:
    check_grantable(request.permission)  # a permission, or resource:* / * (holds them all?)
    kind, principal = principal_of(snapshot, request.subject)
    scope = client_pk(snapshot, request.client_id) if request.client_id else None
    decision = check(snapshot, kind, principal, request.permission, scope)
    return CheckResult(
        allowed=decision.allowed,
        permission=request.permission,
        explanation=decision.explanation(),
    )


def current_snapshot() -> Snapshot:
    return runtime().rbac.get(db.session())


@operation(
    bp,
    "POST",
    "/authz/check",
    summary="Check one permission",
    tag="Authorization",
    permission=Permission.AUTHZ_CHECK,
    body=CheckRequest,
    response=CheckResult,
)
def check_one(caller: Caller, body: CheckRequest) -> CheckResult:
    """Whether the subject holds the permission, globally or within a client; an allow
    names the path that grants it, a deny what is missing and the roles that have it."""
    return evaluate(current_snapshot(), body)


@operation(
    bp,
    "POST",
    "/authz/check/batch",
    summary="Check many permissions at once",
    tag="Authorization",
    permission=Permission.AUTHZ_CHECK,
    body=BatchRequest,
    response=BatchResult,
)
def check_batch(caller: Caller, body: BatchRequest) -> BatchResult:
    """Up to 1,000 checks against one snapshot, answered in order."""
    snapshot = current_snapshot()
    return BatchResult(results=[evaluate(snapshot, item) for item in body.checks])


@operation(
    bp,
    "POST",
    "/authz/what-if",
    summary="Check as if roles or groups changed",
    tag="Authorization",
    permission=Permission.AUTHZ_CHECK,
    body=WhatIfRequest,
    response=WhatIfResult,
)
def what_if(caller: Caller, body: WhatIfRequest) -> WhatIfResult:
    """The decision now and as if the subject had these roles or group memberships added
    or removed. Nothing is changed."""
    snapshot = current_snapshot()
    changed = changed_snapshot(snapshot, db.session(), body.subject, body.changes)
    return WhatIfResult(before=evaluate(snapshot, body), after=evaluate(changed, body))


def changed_snapshot(
    snapshot: Snapshot, session: Session, subject: Subject, changes: Changes
) -> Snapshot:
    """The snapshot as if the subject had these roles or groups added or removed (the
    console's explorer asks the same)."""
    _, principal = principal_of(snapshot, subject)

    def grant(change: RoleChange) -> Grant:
        scope = client_pk(snapshot, change.client_id) if change.client_id else None
        return Grant(role_by_name(session, change.role).id, scope)

    return snapshot.what_if(
        principal,
        add_grants=[grant(c) for c in changes.add_roles],
        remove_grants=[grant(c) for c in changes.remove_roles],
        add_groups=[group_by_name(session, n).id for n in changes.add_groups],
        remove_groups=[group_by_name(session, n).id for n in changes.remove_groups],
    )
