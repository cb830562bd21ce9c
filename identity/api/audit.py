"""The audit trail, read-only: filtered, newest first, a page at a time.

Nothing here changes a record: the trail is append-only and hash-chained (identity.audit,
LOG-04), so the API offers no write operation on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from identity import audit
from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Moment, Output, Page, PageQuery, decode_cursor, encode_cursor
from identity.api.operations import operation
from identity.exceptions import InvalidInput
from identity.extensions import db
from identity.rbac.permissions import Permission

MAX_SEQ = 2**63


class AuditEventQuery(PageQuery):
    since: Moment | None = Field(
        None, description="Events at this moment or later (ISO 8601 with an offset, e.g. Z)."
    )
    until: Moment | None = Field(
        None, description="Events before this moment (ISO 8601 with an offset)."
    )
    actor_id: uuid.UUID | None = Field(None, description="The user who acted.")
    subject_id: uuid.UUID | None = Field(None, description="The user acted upon.")
    event: str | None = Field(None, max_length=64, description="The exact event name.")
    outcome: str | None = Field(None, max_length=16, description="success or failure.")


class AuditEventOut(Output):
    seq: int = Field(description="The record's place in the chain.")
    occurred_at: datetime
    event: str
    outcome: str
    actor_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None
    client_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    data: dict[str, Any]


class AuditEventList(Page[AuditEventOut]):
    pass


def before_seq(cursor: str | None) -> int | None:
    """The seq a page's cursor reads on below (None for the first page); a bad one is a
    400."""
    key = decode_cursor(cursor, 1)
    if key is None:
        return None
    try:
        seq = int(key[0])
    except ValueError:
        seq = 0
    if not 0 < seq < MAX_SEQ:  # a seq is a positive BIGINT
        raise InvalidInput("The cursor is not valid: pass next_cursor as it came.")
    return seq


@operation(
    bp,
    "GET",
    "/audit-events",
    summary="List audit events",
    tag="Audit",
    permission=Permission.AUDIT_READ,
    query=AuditEventQuery,
    response=AuditEventList,
)
def list_audit_events(caller: Caller, query: AuditEventQuery) -> AuditEventList:
    """Newest first (by seq); every filter given must match. Pass next_cursor as cursor
    for older events: each event appears on exactly one page, even while new ones are
    written."""
    rows = audit.query(
        db.session(),
        since=query.since,
        until=query.until,
        actor_id=query.actor_id,
        subject_id=query.subject_id,
        event=query.event,
        outcome=query.outcome,
        before_seq=before_seq(query.cursor),
        limit=query.limit + 1,
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return AuditEventList(
        items=[AuditEventOut.model_validate(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].seq) if more else None,
    )
