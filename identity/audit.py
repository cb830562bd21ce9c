"""One way to write the audit trail: ``record(event, ...)``.

Each event is written in the caller's transaction (so it commits or rolls back with the
action it describes, REL-19) and chained: ``hash = SHA-256(prev_hash + canonical JSON)``.
The single ``audit_head`` row is updated first, which serialises concurrent writers on both
PostgreSQL (row lock) and SQLite (write lock), so the chain never forks. Every event is also
logged as one JSON line. Callers pass no secrets; ``data`` keys that look secret are refused.

``verify_chain`` checks the chain and the tip against ``audit_head`` (LOG-04); ``export``
streams the records as the dictionaries that are hashed, so an export can be re-verified;
``query`` reads them filtered, newest first (the admin API's audit events);
``record_verification`` leaves a check's result in the trail ("audit.verified", from the
console).

No personal data is hashed in the clear, so that it can be erased (GDPR Art. 17) without
breaking the chain: a user is in the chain as a random pseudonym (``audit_pseudonyms``,
deleted with the account), and a record's personal details (the request's address and user
agent, and the emails and names in ``data``, ``PERSONAL_KEYS``) as a digest salted with a
random value kept beside them. ``erase_personal_data`` removes the ids, the details and
the salt; what remains still verifies and tells what happened, to a pseudonym. While the
details are there, ``verify_chain`` checks them against their digest, and each id against
its pseudonym.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, case, cast, delete, null, or_, select, update
from sqlalchemy.orm import Session, aliased

from identity.database import rowcount
from identity.models.audit import AuditEvent, AuditHead, AuditPseudonym
from identity.models.base import utcnow
from identity.models.user import User

log = logging.getLogger("identity.audit")
# Called with (event, outcome) for every record: the metrics count sign-ins and refresh
# reuse here (identity.factory adds identity.telemetry.audited), without this module
# knowing of them.
_listeners: list[Callable[[str, str], None]] = []


def add_listener(listener: Callable[[str, str], None]) -> None:
    """Call ``listener(event, outcome)`` after each record (once, however often added)."""
    if listener not in _listeners:
        _listeners.append(listener)


GENESIS = "0" * 64
_FORBIDDEN_KEYS = {"password", "token", "secret", "code", "otp", "password_hash"}
# ``data`` keys whose values are personal: kept outside the chain, erasable.
PERSONAL_KEYS = frozenset({"email", "new_email", "old_email", "name"})

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
    public = {key: value for key, value in data.items() if key not in PERSONAL_KEYS}
    details = {key: value for key, value in data.items() if key in PERSONAL_KEYS}
    head = _lock_head(session)  # pseudonyms are made under the chain's lock: no races
    entry = AuditEvent(
        seq=head.seq,
        occurred_at=utcnow(),
        event=event,
        outcome=outcome,
        actor_id=actor_id,
        subject_id=subject_id,
        actor_ref=pseudonym(session, actor_id),
        subject_ref=pseudonym(session, subject_id),
        client_id=client_id,
        ip=origin.ip,
        user_agent=origin.user_agent,
        request_id=origin.request_id,
        data=public,
        prev_hash=head.hash,
    )
    if entry.ip or entry.user_agent or details:
        entry.personal = {"salt": secrets.token_hex(16), "data": details}
        entry.personal_digest = personal_digest(entry)
    entry.hash = chain_hash(entry)
    head.hash = entry.hash
    session.add(entry)
    session.flush()
    for listener in _listeners:
        listener(event, outcome)
    # The log line carries ids and the event's public data; never an address or an email.
    log.info(
        event,
        extra={
            "event": event,
            "outcome": outcome,
            "seq": entry.seq,
            "actor_id": str(actor_id) if actor_id else None,
            "subject_id": str(subject_id) if subject_id else None,
            "client_id": client_id,
            "data": public,
        },
    )
    return entry


def pseudonym(session: Session, user_id: uuid.UUID | None) -> str | None:
    """The user's pseudonym in the chain, made on first use (under the chain's lock).
    None for an id that names no user (the record keeps the id, unchecked)."""
    if user_id is None:
        return None
    found = session.get(AuditPseudonym, user_id)
    if found is None:
        if session.get(User, user_id) is None:  # mostly from the identity map: no query
            return None
        found = AuditPseudonym(user_id=user_id, pseudonym=secrets.token_hex(16))
        session.add(found)
        session.flush()
    return found.pseudonym


def personal_digest(entry: AuditEvent) -> str:
    """SHA-256 over the salt and the record's personal details (canonical JSON)."""
    personal = entry.personal or {}
    details = {"ip": entry.ip, "user_agent": entry.user_agent, "data": personal.get("data", {})}
    canonical = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((str(personal.get("salt", "")) + canonical).encode()).hexdigest()


def erase_personal_data(session: Session, user_id: uuid.UUID, email: str | None = None) -> int:
    """Remove the user from the trail: their id wherever it is, the personal details of
    every record they took part in or that names their ``email`` (a failed sign-in, an
    invitation), the salt with them, and their pseudonym's link to them. The chain stays
    intact. Returns how many records were changed."""
    involved = or_(AuditEvent.actor_id == user_id, AuditEvent.subject_id == user_id)
    if email:
        # JSON as text on both databases: the address as the record holds it, quoted.
        named = cast(AuditEvent.personal, Text).contains(json.dumps(email), autoescape=True)
        involved = or_(involved, named)

    def without(column: Any) -> Any:
        return case((column == user_id, None), else_=column)

    changed = rowcount(
        session.execute(
            update(AuditEvent)
            .where(involved)
            .values(
                actor_id=without(AuditEvent.actor_id),
                subject_id=without(AuditEvent.subject_id),
                ip=None,
                user_agent=None,
                personal=null(),  # SQL NULL: None would store JSON null
            )
            .execution_options(synchronize_session=False)
        )
    )
    # The account's deletion cascades to it too; erasing does not depend on that.
    session.execute(delete(AuditPseudonym).where(AuditPseudonym.user_id == user_id))
    return changed


def erase_origins(session: Session, before: datetime) -> int:
    """Retention: the personal details of records older than ``before`` (addresses, user
    agents, emails); ids and pseudonyms stay. Returns how many records were changed."""
    return rowcount(
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.occurred_at < before, AuditEvent.personal_digest.is_not(None))
            .where(or_(AuditEvent.ip.is_not(None), AuditEvent.personal.is_not(None)))
            .values(ip=None, user_agent=None, personal=null())
            .execution_options(synchronize_session=False)
        )
    )


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
        "actor": entry.actor_ref,
        "subject": entry.subject_ref,
        "client_id": entry.client_id,
        "request_id": entry.request_id,
        "data": entry.data,
        "personal_digest": entry.personal_digest,
    }


def outside_fields(entry: AuditEvent) -> dict[str, Any]:
    """What a record holds outside the chain (erasable): the ids its pseudonyms stand for,
    and its personal details with their salt (``personal_digest`` checks them)."""
    personal = entry.personal or {}
    return {
        "actor_id": str(entry.actor_id) if entry.actor_id else None,
        "subject_id": str(entry.subject_id) if entry.subject_id else None,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "personal": personal.get("data"),
        "salt": personal.get("salt"),
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
# Outside the chain, checked while they are there:
ID_MISMATCH = "id_mismatch"  # an actor or subject id is not the user its pseudonym names
DETAILS_MISMATCH = "details_mismatch"  # its personal details do not match their digest

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


def _details_problem(
    entry: AuditEvent, actor: str | None, subject: str | None
) -> tuple[str, str] | None:
    """What is wrong with the parts of an intact ``entry`` outside the chain: its ids
    (``actor`` and ``subject``: the pseudonyms of its actor_id and subject_id, None when
    no such user has one) and its personal details."""
    for role, user_id, ref, found in (
        ("actor", entry.actor_id, entry.actor_ref, actor),
        ("subject", entry.subject_id, entry.subject_ref, subject),
    ):
        if user_id is not None and found is not None and found != ref:
            return ID_MISMATCH, f"id mismatch: its {role}_id is not the user its pseudonym names"
    if entry.personal is None:
        if entry.ip is not None or entry.user_agent is not None:
            return DETAILS_MISMATCH, "details mismatch: address or user agent without a digest"
        return None
    if personal_digest(entry) != entry.personal_digest:
        return DETAILS_MISMATCH, "details mismatch: its personal details do not match the digest"
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
    newest records shows too (LOG-04); and, outside the chain, that each id still present
    is the user its pseudonym names and each record's personal details match their
    digest. Rows are streamed; the tip is read by the same statement, so the check sees
    one consistent state while writers go on appending."""
    tip_seq = select(AuditHead.seq).where(AuditHead.id == 1).scalar_subquery()
    tip_hash = select(AuditHead.hash).where(AuditHead.id == 1).scalar_subquery()
    actor, subject = aliased(AuditPseudonym), aliased(AuditPseudonym)
    rows = session.execute(
        select(AuditEvent, tip_seq, tip_hash, actor.pseudonym, subject.pseudonym)
        .outerjoin(actor, actor.user_id == AuditEvent.actor_id)
        .outerjoin(subject, subject.user_id == AuditEvent.subject_id)
        .order_by(AuditEvent.seq),
        # The rows as stored, not objects this session may hold already.
        execution_options={"yield_per": BATCH, "populate_existing": True},
    )
    checked, prev = 0, GENESIS
    tip: tuple[int, str] | None = None
    try:
        for entry, seq, hash_, actor_ref, subject_ref in rows:
            tip = (seq, hash_) if seq is not None else None
            found = (
                _link_problem(entry, checked + 1, prev)
                or _tip_problem(entry, tip)
                or _details_problem(entry, actor_ref, subject_ref)
            )
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
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    event: str | None = None,
    outcome: str | None = None,
) -> Generator[dict[str, Any], None, None]:
    """The records that occurred at ``since`` or later and before ``until`` (and match the
    other filters given, as in ``query``), oldest first, streamed: each as
    ``hashed_fields()`` with ``details`` (``outside_fields()``), its ``prev_hash`` and
    ``hash``."""
    query = _filtered(
        select(AuditEvent).order_by(AuditEvent.seq),
        since=since,
        until=until,
        actor_id=actor_id,
        subject_id=subject_id,
        event=event,
        outcome=outcome,
    )
    options = {"yield_per": BATCH, "populate_existing": True}
    rows = session.execute(query, execution_options=options).scalars()
    try:
        for entry in rows:
            yield {
                **hashed_fields(entry),
                "details": outside_fields(entry),
                "prev_hash": entry.prev_hash,
                "hash": entry.hash,
            }
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
    statement = _filtered(
        select(AuditEvent).order_by(AuditEvent.seq.desc()),
        since=since,
        until=until,
        actor_id=actor_id,
        subject_id=subject_id,
        event=event,
        outcome=outcome,
    )
    if before_seq is not None:
        statement = statement.where(AuditEvent.seq < before_seq)
    return list(session.execute(statement.limit(limit)).scalars())


def _filtered(
    statement: Select[AuditEvent],
    *,
    since: datetime | None,
    until: datetime | None,
    actor_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    event: str | None,
    outcome: str | None,
) -> Select[AuditEvent]:
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
    return statement


# The event a verification from the console leaves: the dashboard shows the latest one.
VERIFIED = "audit.verified"


def record_verification(
    session: Session, check: ChainCheck, actor_id: uuid.UUID | None = None
) -> AuditEvent:
    """Leave the result of ``verify_chain`` in the trail, so that when the chain was last
    found intact (or broken, and where) is known: "audit.verified", a success with the
    number of records checked, or a failure naming the first bad record and its problem."""
    if check.intact:
        return record(session, VERIFIED, actor_id=actor_id, checked=check.checked)
    return record(
        session,
        VERIFIED,
        outcome="failure",
        actor_id=actor_id,
        checked=check.checked,
        seq=check.seq,
        problem=check.problem,
        detail=check.detail,
    )


def last_verification(session: Session) -> AuditEvent | None:
    """The latest "audit.verified" record, or None."""
    found = query(session, event=VERIFIED, limit=1)
    return found[0] if found else None
