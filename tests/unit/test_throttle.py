"""The sign-in throttle policy, its storage, and device cookies (AUTH-08)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from identity.accounts import throttle
from identity.accounts.throttle import DeviceCookie, ThrottlePolicy
from identity.models.base import Base

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(free_attempts=5, max_delay=900)


@pytest.fixture
def session():
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0), (4, 0), (5, 1), (6, 2), (7, 4), (10, 32), (14, 512), (15, 900), (500, 900)],
)
def test_AUTH_08_delay_grows_after_the_free_attempts_and_is_capped(failures, delay):
    """No delay for the free attempts, then doubling delays capped at max_delay."""
    assert POLICY.delay_after(failures) == delay


def test_throttle_key_hides_the_email():
    """The stored key is a hash; the email does not appear in it."""
    key = throttle.throttle_key("alice@example.org")
    assert len(key) == 64
    assert "alice" not in key
    assert key != throttle.throttle_key("bob@example.org")


def test_AUTH_08_failures_block_after_the_free_attempts(session):
    """The fifth failure blocks for one second; the block ends on time."""
    for n in range(4):
        throttle.register_failure(session, "a@example.org", POLICY, now=NOW + timedelta(seconds=n))
        assert throttle.wait_seconds(session, "a@example.org", now=NOW + timedelta(seconds=n)) == 0
    throttle.register_failure(session, "a@example.org", POLICY, now=NOW)
    assert throttle.wait_seconds(session, "a@example.org", now=NOW) == 1
    assert throttle.wait_seconds(session, "a@example.org", now=NOW + timedelta(seconds=1)) == 0
    assert throttle.wait_seconds(session, "b@example.org", now=NOW) == 0


def test_AUTH_08_old_failures_are_forgotten(session):
    """Failures older than a day do not count towards the next block."""
    for _ in range(4):
        throttle.register_failure(session, "a@example.org", POLICY, now=NOW)
    later = NOW + timedelta(hours=25)
    throttle.register_failure(session, "a@example.org", POLICY, now=later)
    assert throttle.wait_seconds(session, "a@example.org", now=later) == 0


def test_clear_lifts_the_block(session):
    """clear() forgets the account's failures."""
    for _ in range(6):
        throttle.register_failure(session, "a@example.org", POLICY, now=NOW)
    throttle.clear(session, "a@example.org")
    assert throttle.wait_seconds(session, "a@example.org", now=NOW) == 0


def test_device_cookie_vouches_only_for_its_account():
    """A device cookie is accepted for its own email and no other."""
    cookies = DeviceCookie("device-secret-" + "d" * 32)
    value = cookies.issue("alice@example.org")
    assert cookies.vouches_for(value, "alice@example.org") is True
    assert cookies.vouches_for(value, "bob@example.org") is False
    assert "alice" not in value


@pytest.mark.parametrize("value", [None, "", "garbage", "x" * 501])
def test_device_cookie_rejects_junk(value):
    """Missing, malformed and over-long cookies vouch for nobody."""
    assert DeviceCookie("device-secret-" + "d" * 32).vouches_for(value, "a@example.org") is False


def test_device_cookie_rejects_another_secret_and_tampering():
    """Cookies signed with another secret, or edited, vouch for nobody."""
    ours = DeviceCookie("device-secret-" + "d" * 32)
    theirs = DeviceCookie("other-secret-" + "o" * 32)
    value = theirs.issue("alice@example.org")
    assert ours.vouches_for(value, "alice@example.org") is False
    mine = ours.issue("alice@example.org")
    assert ours.vouches_for(mine[:-2] + "xx", "alice@example.org") is False


def test_device_cookie_expires_after_180_days():
    """A device cookie stops vouching after its maximum age."""
    cookies = DeviceCookie("device-secret-" + "d" * 32)
    with time_machine.travel(NOW, tick=False) as traveller:
        value = cookies.issue("alice@example.org")
        traveller.shift(timedelta(days=179))
        assert cookies.vouches_for(value, "alice@example.org") is True
        traveller.shift(timedelta(days=2))
        assert cookies.vouches_for(value, "alice@example.org") is False
