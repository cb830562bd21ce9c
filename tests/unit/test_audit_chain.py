"""The audit hash chain: verify_chain() finds any edit, deletion or reordering."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import create_engine, delete, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from identity import audit
from identity.models.audit import AuditEvent
from identity.models.base import Base


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
    assert audit.verify_chain(session) is None
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
        ("actor_id", uuid.uuid4()),
        ("ip", "203.0.113.1"),
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
    [{"data": {"n": 2, "reason": "forged"}}, {"outcome": "success"}, {"ip": "10.0.0.1"}],
)
def test_edited_event_is_found(session, values):
    """Editing a field of event 3 makes verify_chain() return 3."""
    session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(**values))
    session.commit()
    assert audit.verify_chain(session) == 3


def test_rehashed_edit_is_found_at_the_next_event(session):
    """Recomputing the edited event's own hash still breaks the link to the next one."""
    event = session.get(AuditEvent, 3)
    event.data = {"n": 2, "reason": "forged"}
    event.hash = audit.chain_hash(event)
    session.commit()
    assert audit.verify_chain(session) == 4


def test_deleted_event_is_found(session):
    """Deleting an event in the middle is found at the gap."""
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    session.commit()
    assert audit.verify_chain(session) == 3


def test_deleted_first_event_is_found(session):
    """Deleting the first event is found too."""
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 1))
    session.commit()
    assert audit.verify_chain(session) == 2


def test_chain_continues_after_a_commit(session):
    """New events link onto the existing tip."""
    audit.record(session, "user.sign_out")
    session.commit()
    assert audit.verify_chain(session) is None
    assert session.get(AuditEvent, 6).prev_hash == session.get(AuditEvent, 5).hash


@pytest.mark.parametrize("key", ["password", "token", "secret", "code", "otp", "password_hash"])
def test_LOG_02_secret_keys_are_refused(session, key):
    """record() refuses data keys that name secrets."""
    with pytest.raises(ValueError, match="must not carry secrets"):
        audit.record(session, "user.sign_in", **{key: "value"})
