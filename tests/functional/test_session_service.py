"""The login session service (identity/sessions/service.py) with an explicit clock: what a
session record holds, when resolve() and alive_by_sid() stop accepting it, when its activity
is written, and which records end(), end_all() and purge_expired() delete."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models.base import utcnow
from identity.models.session import LoginSession
from identity.models.user import User
from identity.sessions import service

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = service.SessionPolicy(timedelta(minutes=10), timedelta(minutes=30))


def at(**delta: float) -> datetime:
    return START + timedelta(**delta)


def stored(token: str) -> LoginSession | None:
    return db.session.get(LoginSession, hashlib.sha256(token.encode()).hexdigest())


def naive(moment: datetime) -> datetime:
    """Datetimes as the database gives them back (SQLite drops the zone)."""
    return moment.replace(tzinfo=None) if moment.tzinfo else moment


@pytest.fixture
def alice(app, user):
    with app.app_context():
        yield db.session.get(User, user)


@pytest.fixture
def alice_and_bob(app, user, make_user):
    """Two users, both made before the test's app context opens its transaction."""
    bob = make_user("bob@example.org")
    with app.app_context():
        yield db.session.get(User, user), db.session.get(User, bob)


def test_SESS_01_a_session_record_holds_the_hash_and_the_policy_times(alice):
    """start() returns the cookie value once, stores only its SHA-256, a fresh public sid of
    at least 128 bits, and times from the clock it is given."""
    token, record = service.start(db.session, alice, POLICY, amr=["pwd"], acr="1", now=START)
    db.session.commit()
    assert record.id_hash == hashlib.sha256(token.encode()).hexdigest() != token
    assert len(base64.urlsafe_b64decode(token + "==")) >= 32
    assert len(base64.urlsafe_b64decode(record.sid + "==")) >= 16
    again = stored(token)
    assert again is not None and again.sid == record.sid
    assert naive(again.created_at) == naive(START) == naive(again.last_seen_at)
    assert naive(again.auth_time) == naive(START)
    assert naive(again.expires_at) == naive(at(minutes=30))
    assert (again.amr, again.acr) == (["pwd"], "1")


def test_SESS_02_a_new_sign_in_may_keep_the_public_sid_but_not_the_cookie(alice):
    """Signing in again in the same browser carries the sid over; the cookie is new."""
    first, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    second, again = service.start(db.session, alice, POLICY, amr=["pwd"], sid=record.sid)
    assert again.sid == record.sid and second != first
    _, fresh = service.start(db.session, alice, POLICY, amr=["pwd"])
    assert fresh.sid != record.sid


def test_the_clock_defaults_to_now(alice):
    """Without an explicit clock the record starts now and resolves as live."""
    before = utcnow()
    token, record = service.start(db.session, alice, POLICY, amr=["pwd"])
    db.session.commit()
    assert before <= record.created_at <= utcnow()
    assert service.resolve(db.session, token, POLICY) is not None
    assert service.alive_by_sid(db.session, record.sid, POLICY) is not None


@pytest.mark.parametrize(
    ("user_agent", "kept"),
    [("Firefox/140", "Firefox/140"), ("x" * 500, "x" * 400), ("", None), (None, None)],
)
def test_the_user_agent_is_kept_up_to_400_characters(alice, user_agent, kept):
    """The browser's name is stored cut to 400 characters; an empty one is stored as none."""
    _, record = service.start(db.session, alice, POLICY, amr=["pwd"], user_agent=user_agent)
    assert record.user_agent == kept


def test_the_policy_cannot_be_changed_once_built():
    """The session policy is frozen: no code path can stretch the timeouts in flight."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.idle_timeout = timedelta(days=365)  # type: ignore[misc]


class LookupSpy:
    """A session that records primary-key look-ups and finds nothing."""

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def get(self, model, key):
        self.looked_up.append(key)


def test_WEB_15_cookie_values_are_looked_up_only_when_plausible():
    """An empty or over-100-character cookie value is refused before any database look-up;
    100 characters are looked up."""
    spy = LookupSpy()
    for value in ("", "c" * 101, "c" * 1000):
        assert service.resolve(spy, value, POLICY, START) is None  # type: ignore[arg-type]
    assert spy.looked_up == []
    assert service.resolve(spy, "c" * 100, POLICY, START) is None  # type: ignore[arg-type]
    assert spy.looked_up == [hashlib.sha256(b"c" * 100).hexdigest()]


def test_SESS_07_resolve_ends_a_session_at_its_idle_timeout(alice):
    """A session unused for 10 minutes less a second is alive; at 10 minutes it is dead and
    its record deleted."""
    token, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    assert service.resolve(db.session, token, POLICY, at(minutes=10, seconds=-1)) is not None
    db.session.rollback()  # forget the touch: measure idleness from START again
    assert service.resolve(db.session, token, POLICY, at(minutes=10)) is None
    db.session.commit()
    assert stored(token) is None


def test_SESS_07_resolve_ends_a_session_at_its_absolute_timeout(alice):
    """However active, a session is alive a second before 30 minutes and dead at 30."""
    token, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    record.last_seen_at = at(minutes=29)
    db.session.commit()
    assert service.resolve(db.session, token, POLICY, at(minutes=30, seconds=-1)) is not None
    assert service.resolve(db.session, token, POLICY, at(minutes=30)) is None
    db.session.commit()
    assert stored(token) is None
    assert service.resolve(db.session, "no-such-cookie", POLICY, START) is None


def test_SESS_04_resolve_ends_the_session_of_a_disabled_user(alice):
    """A disabled user's session resolves to nothing and is deleted."""
    token, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    alice.disabled_at = START
    db.session.commit()
    assert service.resolve(db.session, token, POLICY, at(minutes=1)) is None
    db.session.commit()
    assert stored(token) is None


def test_SESS_07_activity_is_written_once_a_minute(alice):
    """Use within 60 s of the last recorded activity writes nothing; from 60 s on, the
    activity time moves."""
    token, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    record = service.resolve(db.session, token, POLICY, at(seconds=59))
    assert record is not None and naive(record.last_seen_at) == naive(START)
    record = service.resolve(db.session, token, POLICY, at(seconds=60))
    assert record is not None and naive(record.last_seen_at) == naive(at(seconds=60))


def test_SESS_07_alive_by_sid_writes_activity_once_a_minute(alice):
    """A token refresh counts as use as a request does: within 60 s of the last recorded
    activity nothing is written, from 60 s on the activity time moves."""
    _, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    found = service.alive_by_sid(db.session, record.sid, POLICY, at(seconds=59))
    assert found is not None and naive(found.last_seen_at) == naive(START)
    found = service.alive_by_sid(db.session, record.sid, POLICY, at(seconds=60))
    assert found is not None and naive(found.last_seen_at) == naive(at(seconds=60))


def test_SESS_07_alive_by_sid_honours_both_timeouts_and_deletes_nothing(alice_and_bob):
    """By public sid: the session named, alive before its idle and absolute limits, None at
    them (the record stays for resolve() or the purge), touched once a minute."""
    alice, bob = alice_and_bob
    _, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    _, other = service.start(db.session, bob, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    sid = record.sid
    assert service.alive_by_sid(db.session, "no-such-sid", POLICY, START) is None
    found = service.alive_by_sid(db.session, sid, POLICY, at(seconds=59))
    assert found is not None and found.sid == sid and naive(found.last_seen_at) == naive(START)
    db.session.rollback()
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=10, seconds=-1)) is not None
    db.session.rollback()
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=10)) is None
    touched = service.alive_by_sid(db.session, sid, POLICY, at(minutes=9))
    assert touched is not None and naive(touched.last_seen_at) == naive(at(minutes=9))
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=18)) is not None
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=27)) is not None
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=30, seconds=-1)) is not None
    assert service.alive_by_sid(db.session, sid, POLICY, at(minutes=30)) is None
    db.session.commit()
    assert db.session.execute(select(LoginSession).where(LoginSession.sid == sid)).scalar_one()
    assert other.sid != sid


def test_SESS_03_end_ends_exactly_one_session(alice):
    """Signing out deletes the session of that cookie and no other."""
    gone, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    kept, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    service.end(db.session, gone)
    db.session.commit()
    assert stored(gone) is None and stored(kept) is not None


def test_SESS_05_end_all_ends_a_users_sessions_but_the_one_kept(alice_and_bob):
    """end_all() deletes every session of the user (the one kept excepted) and counts them;
    another user's sessions stay."""
    alice, bob = alice_and_bob
    first, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    second, current = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    third, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    bobs, _ = service.start(db.session, bob, POLICY, amr=["pwd"], now=START)
    db.session.commit()
    assert service.end_all(db.session, alice.id, keep=current.id_hash) == 2
    db.session.commit()
    assert stored(first) is None and stored(third) is None
    assert stored(second) is not None and stored(bobs) is not None
    assert service.end_all(db.session, alice.id) == 1
    db.session.commit()
    assert stored(second) is None and stored(bobs) is not None


def test_SESS_07_purge_deletes_sessions_at_their_limits_exactly(alice):
    """purge_expired() deletes a session whose absolute limit is now, or whose last use is
    exactly the idle timeout ago; a second less and it stays."""
    now = at(hours=1)
    over_age, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=now)
    record.expires_at = now
    idle, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=now)
    record.last_seen_at = now - timedelta(minutes=10)
    live, record = service.start(db.session, alice, POLICY, amr=["pwd"], now=now)
    record.expires_at = now + timedelta(seconds=1)
    record.last_seen_at = now - timedelta(minutes=10) + timedelta(seconds=1)
    db.session.commit()
    assert service.purge_expired(db.session, POLICY, now=now) == 2
    db.session.commit()
    assert stored(over_age) is None and stored(idle) is None and stored(live) is not None


def test_purge_uses_the_current_time_by_default(alice):
    """Without a clock the purge measures against now: a session of 2030 is not yet dead,
    one that ended an hour ago is."""
    future, _ = service.start(db.session, alice, POLICY, amr=["pwd"], now=START)
    past, _ = service.start(
        db.session, alice, POLICY, amr=["pwd"], now=utcnow() - timedelta(hours=1)
    )
    db.session.commit()
    assert service.purge_expired(db.session, POLICY) == 1
    db.session.commit()
    assert stored(past) is None and stored(future) is not None
