"""The audit hash chain: verify_chain() finds any edit, deletion or reordering, and says what
is wrong with the first bad record."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, delete, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from identity import audit
from identity.models.audit import AuditEvent, AuditHead, AuditPseudonym
from identity.models.base import Base
from identity.models.user import User


@pytest.fixture
def session():
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for n in range(5):
            audit.record(session, "user.sign_in", outcome="failure", reason="x", n=n)
        session.commit()
        yield session
    engine.dispose()


def test_intact_chain_verifies(session):
    """Five recorded events form an intact chain starting from the genesis hash."""
    assert audit.verify_chain(session).intact
    events = session.query(AuditEvent).order_by(AuditEvent.seq).all()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


def test_chain_hash_depends_on_every_field(session):
    """Changing any recorded field changes the event's hash."""
    event = session.get(AuditEvent, 2)
    original = audit.chain_hash(event)
    for field, value in [
        ("event", "user.other"),
        ("outcome", "success"),
        ("actor_ref", "a" * 32),
        ("subject_ref", "b" * 32),
        ("personal_digest", "c" * 64),
        ("data", {"n": 99}),
        ("prev_hash", "f" * 64),
    ]:
        saved = getattr(event, field)
        setattr(event, field, value)
        assert audit.chain_hash(event) != original, field
        setattr(event, field, saved)
    assert audit.chain_hash(event) == original
    session.rollback()


@pytest.mark.parametrize(
    "values",
    [{"data": {"n": 2, "reason": "forged"}}, {"outcome": "success"}, {"actor_ref": "a" * 32}],
)
def test_edited_event_is_found(session, values):
    """Editing a field of event 3 makes verify_chain() name event 3, its hash not matching
    (LOG-04)."""
    session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(**values))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem, check.checked) == (3, audit.HASH_MISMATCH, 2)
    assert check.event == "user.sign_in" and check.occurred_at is not None
    assert not check.intact


def test_rehashed_edit_is_found_at_the_next_event(session):
    """Recomputing the edited event's own hash still breaks the link to the next one
    (LOG-04)."""
    event = session.get(AuditEvent, 3)
    event.data = {"n": 2, "reason": "forged"}
    event.hash = audit.chain_hash(event)
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem) == (4, audit.BROKEN_LINK)
    assert check.detail == (
        "broken link to the previous record: its prev_hash is not the hash of seq 3"
    )


def test_deleted_event_is_found(session):
    """Deleting an event in the middle is found at the gap (LOG-04)."""
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem, check.checked) == (3, audit.SEQ_GAP, 1)
    assert check.detail == "gap in seq: seq 2 is missing"


def test_deleted_first_event_is_found(session):
    """Deleting the first event is found too (LOG-04)."""
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 1))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem, check.checked) == (2, audit.SEQ_GAP, 0)


def test_chain_continues_after_a_commit(session):
    """New events link onto the existing tip."""
    audit.record(session, "user.sign_out")
    session.commit()
    assert audit.verify_chain(session).intact
    assert session.get(AuditEvent, 6).prev_hash == session.get(AuditEvent, 5).hash


def test_LOG_04_deleting_the_newest_events_is_found(session):
    """Deleting the newest events leaves an intact chain that ends before audit_head's tip:
    verify_chain() names the first missing seq."""
    session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem, check.checked) == (4, audit.TRUNCATED, 3)
    assert check.event is None and check.occurred_at is None
    assert "audit_head records seq 5" in (check.detail or "")


def test_LOG_04_deleting_every_event_is_found(session):
    """An empty trail with a tip in audit_head was emptied."""
    session.execute(delete(AuditEvent))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem, check.checked) == (1, audit.TRUNCATED, 0)


def _forge_sixth(session):
    """Append a correctly chained event without moving audit_head."""
    fifth = session.get(AuditEvent, 5)
    forged = AuditEvent(
        seq=6,
        occurred_at=fifth.occurred_at,
        event="user.sign_in",
        outcome="success",
        data={},
        prev_hash=fifth.hash,
    )
    forged.hash = audit.chain_hash(forged)
    session.add(forged)


@pytest.mark.parametrize(
    ("tamper", "seq"),
    [
        (lambda s: s.execute(update(AuditHead).values(hash="f" * 64)), 5),
        (lambda s: s.execute(update(AuditHead).values(seq=3)), 3),
        (lambda s: s.execute(delete(AuditHead)), 1),
        (_forge_sixth, 6),
    ],
    ids=["head hash", "head seq", "no head", "event beyond the head"],
)
def test_LOG_04_trail_out_of_step_with_its_head_is_found(session, tamper, seq):
    """The chain must end exactly at the tip audit_head holds."""
    tamper(session)
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem) == (seq, audit.HEAD_MISMATCH)


def test_a_new_empty_trail_is_intact():
    """No events and no audit_head yet: nothing to find wrong."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        assert audit.verify_chain(session) == audit.ChainCheck(checked=0)
    engine.dispose()


def test_LOG_04_verify_reads_the_rows_as_stored(session):
    """Events this session already holds do not hide an edit made in the database."""
    held = session.get(AuditEvent, 3)
    assert held is not None
    session.execute(
        update(AuditEvent).where(AuditEvent.seq == 3).values(outcome="success"),
        execution_options={"synchronize_session": False},
    )
    assert held.outcome == "failure"  # the session's copy is stale
    assert audit.verify_chain(session).seq == 3


def test_export_streams_the_hashed_fields(session):
    """Each exported record is the dictionary its hash covers, with details (outside the
    chain), prev_hash and hash: an export can be re-verified without the database."""
    records = list(audit.export(session))
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    prev = audit.GENESIS
    for record in records:
        body = {k: v for k, v in record.items() if k not in ("prev_hash", "hash", "details")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert record["prev_hash"] == prev
        assert hashlib.sha256((prev + canonical).encode()).hexdigest() == record["hash"]
        prev = record["hash"]


@pytest.mark.parametrize("key", ["password", "token", "secret", "code", "otp", "password_hash"])
def test_LOG_02_secret_keys_are_refused(session, key):
    """record() refuses data keys that name secrets."""
    with pytest.raises(ValueError, match="must not carry secrets"):
        audit.record(session, "user.sign_in", **{key: "value"})


# Personal data outside the chain (GDPR erasure) -------------------------------------------


def _user(session, email="ann@example.org", name="Ann"):
    user = User(email=email, name=name, password_hash="x")
    session.add(user)
    session.flush()
    return user


def _with_origin(session, ip="198.51.100.7", user_agent="probe/1.0"):
    session.info[audit.ORIGIN] = audit.Origin(ip=ip, user_agent=user_agent, request_id="r1")


def test_GDPR_08_the_chain_holds_pseudonyms_and_a_digest_not_personal_data(session):
    """Users are in the chain as their pseudonym and personal details as a salted digest;
    the ids, address, user agent and emails are kept beside the chain."""
    ann = _user(session)
    _with_origin(session)
    entry = audit.record(
        session, "user.update", actor_id=ann.id, subject_id=ann.id, email=ann.email, role="x"
    )
    session.commit()
    hashed = json.dumps(audit.hashed_fields(entry))
    for personal in (str(ann.id), ann.email, "198.51.100.7", "probe/1.0"):
        assert personal not in hashed
    assert entry.actor_ref == entry.subject_ref == audit.pseudonym(session, ann.id)
    assert entry.data == {"role": "x"} and entry.personal["data"] == {"email": ann.email}
    assert entry.personal_digest == audit.personal_digest(entry)
    assert audit.verify_chain(session).intact


def test_GDPR_08_each_user_has_one_random_pseudonym(session):
    ann, bob = _user(session), _user(session, "bob@example.org", "Bob")
    first = audit.pseudonym(session, ann.id)
    assert audit.pseudonym(session, ann.id) == first != audit.pseudonym(session, bob.id)
    assert str(ann.id).replace("-", "") not in first and len(first) == 32
    assert audit.pseudonym(session, uuid.uuid4()) is None  # no such user: no pseudonym


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"ip": "10.9.9.9"}, audit.DETAILS_MISMATCH),
        ({"user_agent": "forged"}, audit.DETAILS_MISMATCH),
        ({"personal": {"salt": "00", "data": {"email": "x@example.org"}}}, audit.DETAILS_MISMATCH),
        ({"personal": None}, audit.DETAILS_MISMATCH),  # address left, salt gone
        ({"subject_id": "bob"}, audit.ID_MISMATCH),  # another user's id
    ],
)
def test_LOG_04_edits_outside_the_chain_are_found(session, values, problem):
    """The ids and personal details are outside the hash, yet checked while they exist:
    each id against its user's pseudonym, the details against their digest."""
    ann, bob = _user(session), _user(session, "bob@example.org", "Bob")
    audit.pseudonym(session, bob.id)
    _with_origin(session)
    entry = audit.record(session, "user.update", actor_id=ann.id, subject_id=ann.id, email="a@b.c")
    session.commit()
    if values.get("subject_id") == "bob":
        values = {"subject_id": bob.id}
    session.execute(update(AuditEvent).where(AuditEvent.seq == entry.seq).values(**values))
    session.commit()
    check = audit.verify_chain(session)
    assert (check.seq, check.problem) == (entry.seq, problem)


def test_GDPR_08_erasing_a_user_keeps_the_chain_verifiable(session):
    """After their details are erased and their account deleted, nothing in the trail names
    the user, the chain verifies, and the records still show what happened, to a pseudonym."""
    ann, bob = _user(session), _user(session, "bob@example.org", "Bob")
    _with_origin(session)
    audit.record(session, "user.sign_in", actor_id=ann.id, subject_id=ann.id, email=ann.email)
    audit.record(session, "role.assign", actor_id=bob.id, subject_id=ann.id, role="editor")
    kept = audit.record(session, "user.sign_in", actor_id=bob.id, subject_id=bob.id)
    pseudonym = audit.pseudonym(session, ann.id)
    session.commit()

    assert audit.erase_personal_data(session, ann.id) == 2
    session.delete(ann)
    session.commit()

    rows = session.query(AuditEvent).order_by(AuditEvent.seq).all()
    dumped = json.dumps([audit.outside_fields(r) | audit.hashed_fields(r) for r in rows])
    for personal in (str(ann.id), ann.email, "Ann"):
        assert personal not in dumped
    assert session.get(AuditPseudonym, ann.id) is None  # the link is gone
    assert [r.subject_ref for r in rows[5:7]] == [pseudonym, pseudonym]
    assert rows[5].ip is None and rows[5].personal is None
    assert rows[6].actor_id == bob.id and rows[6].subject_id is None
    assert kept.ip == "198.51.100.7" and kept.actor_id == bob.id  # others keep theirs
    assert audit.verify_chain(session).intact


def test_GDPR_13_retention_drops_old_details_and_keeps_the_chain(session):
    """Personal details older than the retention period go; the records, their ids and
    pseudonyms stay, and the chain verifies."""
    ann = _user(session)
    _with_origin(session)
    old = audit.record(session, "user.sign_in", actor_id=ann.id, email=ann.email)
    session.commit()
    assert audit.erase_origins(session, old.occurred_at + timedelta(seconds=1)) == 1
    session.commit()
    session.refresh(old)
    assert (old.ip, old.user_agent, old.personal) == (None, None, None)
    assert old.actor_id == ann.id
    assert audit.verify_chain(session).intact
