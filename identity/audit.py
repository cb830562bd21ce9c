"""One way to write the audit trail: ``record(event, ...)``.

Each event is written in the caller's transaction (so it commits or rolls back with the
action it describes, REL-19) and chained: ``hash = SHA-256(prev_hash + canonical JSON)``.
The single ``audit_head`` row is updated first, which serialises concurrent writers on both
PostgreSQL (row lock) and SQLite (write lock), so the chain never forks. Every event is also
logged as one JSON line. Callers pass no secrets; ``data`` keys that look secret are refused.

``verify_chain`` checks the chain and the tip against ``audit_head`` (LOG-04); ``export``
streams the records as the dictionaries that are hashed, so an export can be re-verified;
``query`` reads them filtered, newest first (the admin API's audit events).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from identity.models.audit import AuditEvent, AuditHead
from identity.models.base import utcnow

log = logging.getLogger("identity.audit")

GENESIS = "0" * 64
_FORBIDDEN_KEYS = {"password", "token", "secret", "code", "otp", "password_hash"}

# The key in ``Session.info`` of the unit of work's Origin: a request's unit of work puts
# it there (identity.unit_of_work); a command's has none.
ORIGIN = "identity.audit.origin"
# The key in ``Session.info`` of the client whose service account acts in this unit of
# work (an admin API call with a client credentials token): its records name it as the
# actor, ``actor_client`` in their data, since ``actor_id`` names users.
ACTOR_CLIENT = "identity.audit.actor_client"


@dataclass(frozen=True)
class Origin:
    """Where the audited actions of a unit of work come from: the client's address, its
    user agent and the request id (all None for a command)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


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
    origin = session.info.get(ORIGIN) or Origin()
    actor_client = session.info.get(ACTOR_CLIENT)
    if actor_client and actor_id is None:
        data = {**data, "actor_client": actor_client}
    head = _lock_head(session)
    entry = AuditEvent(
        seq=head.seq,
        occurred_at=utcnow(),
        event=event,
        outcome=outcome,
        actor_id=actor_id,
        subject_id=subject_id,
        client_id=client_id,
        ip=origin.ip,
        user_agent=origin.user_agent,
        request_id=origin.request_id,
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
            "ip": origin.ip,
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


def hashed_fields(entry: AuditEvent) -> dict[str, Any]:
    """The recorded fields of an event as JSON values: what its hash covers (with its
    prev_hash), in the order an export writes them."""
    return {
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


def chain_hash(entry: AuditEvent) -> str:
    canonical = json.dumps(hashed_fields(entry), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((entry.prev_hash + canonical).encode()).hexdigest()


# What verify_chain() finds wrong with the first bad record (ChainCheck.problem).
HASH_MISMATCH = "hash_mismatch"  # its fields do not hash to its stored hash: edited
BROKEN_LINK = "broken_link"  # its prev_hash is not the previous record's hash
SEQ_GAP = "seq_gap"  # the seq before it is missing: deleted
TRUNCATED = "truncated"  # the newest records are missing: audit_head is further on
HEAD_MISMATCH = "head_mismatch"  # the chain's end is not the tip audit_head holds

# Rows fetched at a time: a long trail is streamed, never loaded at once.
BATCH = 1000


@dataclass(frozen=True)
class ChainCheck:
    """What ``verify_chain`` found. ``checked`` counts the records found intact (all of
    them when the chain is); ``seq`` is None when the chain is intact, else the first bad
    record's, with its ``event`` and ``occurred_at``, what is wrong (``problem``, one of
    the constants above) and a sentence saying so (``detail``). For a truncated trail
    ``seq`` is the first missing record's, and ``event`` and ``occurred_at`` are None."""

    checked: int
    seq: int | None = None
    problem: str | None = None
    detail: str | None = None
    event: str | None = None
    occurred_at: datetime | None = None

    @property
    def intact(self) -> bool:
        return self.seq is None


def _link_problem(entry: AuditEvent, seq: int, prev: str) -> tuple[str, str] | None:
    """What is wrong with ``entry`` where record ``seq``, chained onto ``prev``, belongs."""
    if entry.seq > seq:
        missing = f"seq {seq} is" if entry.seq == seq + 1 else f"seqs {seq} to {entry.seq - 1} are"
        return SEQ_GAP, f"gap in seq: {missing} missing"
    if entry.seq != seq:
        return SEQ_GAP, f"gap in seq: seq {seq} was expected"
    if entry.prev_hash != prev:
        previous = f"the hash of seq {seq - 1}" if seq > 1 else "the genesis hash"
        return BROKEN_LINK, f"broken link to the previous record: its prev_hash is not {previous}"
    if chain_hash(entry) != entry.hash:
        return HASH_MISMATCH, "hash mismatch: its fields do not hash to its stored hash"
    return None


def _tip_problem(entry: AuditEvent, tip: tuple[int, str] | None) -> tuple[str, str] | None:
    """What is wrong with an intact ``entry`` given the tip (seq, hash) audit_head holds."""
    if tip is None:
        return HEAD_MISMATCH, "head mismatch: audit_head is missing, yet the trail has records"
    tip_seq, tip_hash = tip
    if entry.seq > tip_seq:
        return (
            HEAD_MISMATCH,
            f"head mismatch: audit_head ends the trail at seq {tip_seq}, yet records follow",
        )
    if entry.seq == tip_seq and entry.hash != tip_hash:
        return (
            HEAD_MISMATCH,
            "head mismatch: its hash is not the one audit_head holds for the newest record",
        )
    return None


def verify_chain(session: Session) -> ChainCheck:
    """Check the whole trail: each record's hash, its link to the previous record and its
    seq, then that the trail ends at the tip ``audit_head`` holds, so that deleting the
    newest records shows too (LOG-04). Rows are streamed; the tip is read by the same
    statement, so the check sees one consistent state while writers go on appending."""
    tip_seq = select(AuditHead.seq).where(AuditHead.id == 1).scalar_subquery()
    tip_hash = select(AuditHead.hash).where(AuditHead.id == 1).scalar_subquery()
    rows = session.execute(
        select(AuditEvent, tip_seq, tip_hash).order_by(AuditEvent.seq),
        # The rows as stored, not objects this session may hold already.
        execution_options={"yield_per": BATCH, "populate_existing": True},
    )
    checked, prev = 0, GENESIS
    tip: tuple[int, str] | None = None
    try:
        for entry, seq, hash_ in rows:
            tip = (seq, hash_) if seq is not None else None
            found = _link_problem(entry, checked + 1, prev) or _tip_problem(entry, tip)
            if found is not None:
                problem, detail = found
                return ChainCheck(
                    checked, entry.seq, problem, detail, entry.event, entry.occurred_at
                )
            checked, prev = checked + 1, entry.hash
    finally:
        rows.close()
    if checked == 0:
        head = session.get(AuditHead, 1, populate_existing=True)
        tip = (head.seq, head.hash) if head is not None else None
    if tip is not None and tip[0] > checked:
        ends = f"ends at seq {checked}" if checked else "is empty"
        detail = (
            f"truncated: the trail {ends}, but audit_head records seq {tip[0]}: "
            "the newest records were deleted"
        )
        return ChainCheck(checked, checked + 1, TRUNCATED, detail)
    return ChainCheck(checked)


def export(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> Generator[dict[str, Any], None, None]:
    """The records that occurred at ``since`` or later and before ``until``, oldest first,
    streamed: each as ``hashed_fields()`` with its ``prev_hash`` and ``hash``."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    options = {"yield_per": BATCH, "populate_existing": True}
    rows = session.execute(query, execution_options=options).scalars()
    try:
        for entry in rows:
            yield {**hashed_fields(entry), "prev_hash": entry.prev_hash, "hash": entry.hash}
    finally:
        rows.close()


def query(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    event: str | None = None,
    outcome: str | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """The records matching every filter given, newest first: occurred at ``since`` or
    later and before ``until``, with this actor, subject, event name and outcome, and (to
    read on from a page) a seq below ``before_seq``; at most ``limit`` of them."""
    statement = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if since is not None:
        statement = statement.where(AuditEvent.occurred_at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.occurred_at < until)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if subject_id is not None:
        statement = statement.where(AuditEvent.subject_id == subject_id)
    if event is not None:
        statement = statement.where(AuditEvent.event == event)
    if outcome is not None:
        statement = statement.where(AuditEvent.outcome == outcome)
    if before_seq is not None:
        statement = statement.where(AuditEvent.seq < before_seq)
    return list(session.execute(statement.limit(limit)).scalars())
