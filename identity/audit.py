"""One way to write the audit trail: ``record(event, ...)``.

Each event is written in the caller's transaction (so it commits or rolls back with the
action it describes, REL-19) and chained: ``hash = SHA-256(prev_hash + canonical JSON)``.
The single ``audit_head`` row is updated first, which serialises concurrent writers on both
PostgreSQL (row lock) and SQLite (write lock), so the chain never forks. Every event is also
logged as one JSON line. Callers pass no secrets; ``data`` keys that look secret are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from identity.models.audit import AuditEvent, AuditHead
from identity.models.base import utcnow

log = logging.getLogger("identity.audit")

GENESIS = "0" * 64
_FORBIDDEN_KEYS = {"password", "token", "secret", "code", "otp", "password_hash"}


def record(
    session: Session,
    event: str,
    *,
    outcome: str = "success",
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    client_id: str | None = None,
    **data: Any,
) -> AuditEvent:
    leaked = _FORBIDDEN_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data must not carry secrets: {sorted(leaked)}")
    ip = user_agent = request_id = None
    if has_request_context():
        from identity.security import client_ip

        ip = client_ip()
        user_agent = (request.user_agent.string or "")[:400] or None
        request_id = g.get("request_id")

    head = _lock_head(session)
    entry = AuditEvent(
        seq=head.seq,
        occurred_at=utcnow(),
        event=event,
        outcome=outcome,
        actor_id=actor_id,
        subject_id=subject_id,
        client_id=client_id,
        ip=ip,
        user_agent=user_agent,
        request_id=request_id,
        data=data,
        prev_hash=head.hash,
    )
    entry.hash = chain_hash(entry)
    head.hash = entry.hash
    session.add(entry)
    session.flush()
    log.info(
        event,
        extra={
            "event": event,
            "outcome": outcome,
            "seq": entry.seq,
            "actor_id": str(actor_id) if actor_id else None,
            "subject_id": str(subject_id) if subject_id else None,
            "client_id": client_id,
            "ip": ip,
            "data": data,
        },
    )
    return entry


def _lock_head(session: Session) -> AuditHead:
    """Advance the chain tip, creating it on first use; the UPDATE takes the write lock."""
    bumped = session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        session.add(AuditHead(id=1, seq=1, hash=GENESIS))
        session.flush()
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)
    ).scalar_one()
    return head


def chain_hash(entry: AuditEvent) -> str:
    body = {
        "seq": entry.seq,
        "occurred_at": entry.occurred_at.isoformat(),
        "event": entry.event,
        "outcome": entry.outcome,
        "actor_id": str(entry.actor_id) if entry.actor_id else None,
        "subject_id": str(entry.subject_id) if entry.subject_id else None,
        "client_id": entry.client_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "data": entry.data,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((entry.prev_hash + canonical).encode()).hexdigest()


def verify_chain(session: Session) -> int | None:
    """The seq of the first event whose hash or link is wrong, or None when intact."""
    expected_prev = GENESIS
    expected_seq = 1
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
    for entry in rows:
        if entry.seq != expected_seq or entry.prev_hash != expected_prev:
            return entry.seq
        if chain_hash(entry) != entry.hash:
            return entry.seq
        expected_prev = entry.hash
        expected_seq += 1
    return None
