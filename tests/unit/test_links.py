"""Signed, expiring, purpose-bound links."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from identity.links import LinkError, LinkSigner, fingerprint

SECRET = "unit-test-secret-" + "k" * 32
STATE = ("reset-password", "user-1", "$argon2id$hash", None)


def test_sign_and_load_round_trip():
    """A fresh link gives back its user id and state fingerprint."""
    signer = LinkSigner(SECRET)
    token = signer.sign("reset-password", "user-1", STATE)
    assert signer.load("reset-password", token, 3600) == ("user-1", fingerprint(STATE))


def test_AUTH_16_purpose_is_part_of_the_signature():
    """A verification link is not a reset link."""
    signer = LinkSigner(SECRET)
    token = signer.sign("verify-email", "user-1", STATE)
    with pytest.raises(LinkError):
        signer.load("reset-password", token, 3600)


def test_AUTH_14_links_expire():
    """A link older than max_age is refused."""
    signer = LinkSigner(SECRET)
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as traveller:
        token = signer.sign("reset-password", "user-1", STATE)
        traveller.shift(timedelta(seconds=3599))
        signer.load("reset-password", token, 3600)
        traveller.shift(timedelta(seconds=2))
        with pytest.raises(LinkError):
            signer.load("reset-password", token, 3600)


@pytest.mark.parametrize("mangle", [lambda t: t[:-1], lambda t: t + "x", lambda t: "x" + t[1:]])
def test_tampered_links_are_refused(mangle):
    """Any edit to the token breaks its signature."""
    signer = LinkSigner(SECRET)
    token = signer.sign("reset-password", "user-1", STATE)
    with pytest.raises(LinkError):
        signer.load("reset-password", mangle(token), 3600)


def test_links_from_another_secret_are_refused():
    """A link signed with another deployment's secret is refused."""
    token = LinkSigner("another-secret-" + "z" * 32).sign("reset-password", "user-1", STATE)
    with pytest.raises(LinkError):
        LinkSigner(SECRET).load("reset-password", token, 3600)


def test_over_long_tokens_are_refused_before_parsing():
    """Tokens over 1000 characters are refused outright."""
    with pytest.raises(LinkError):
        LinkSigner(SECRET).load("reset-password", "a" * 1001, 3600)


def test_the_length_cap_of_1000_characters_acts_before_parsing(monkeypatch):
    """A token of 1000 characters reaches the signature check; one of 1001 characters is
    refused before anything parses it."""
    parsed: list[int] = []
    real = URLSafeTimedSerializer.loads

    def spy(self, token, *args, **kwargs):
        parsed.append(len(token))
        return real(self, token, *args, **kwargs)

    monkeypatch.setattr(URLSafeTimedSerializer, "loads", spy)
    signer = LinkSigner(SECRET)
    for length in (1000, 1001):
        with pytest.raises(LinkError):
            signer.load_with_value("change-email", "a" * length, 3600)
    assert parsed == [1000]


def test_a_link_carries_its_value_and_only_when_given_one():
    """The signed value (an email change's new address) comes back as given; a link
    signed without one gives back None, not the text "None"."""
    signer = LinkSigner(SECRET)
    with_value = signer.sign("change-email", "user-1", STATE, "new@example.org")
    without = signer.sign("change-email", "user-1", STATE)
    assert signer.load_with_value("change-email", with_value, 3600) == (
        "user-1",
        fingerprint(STATE),
        "new@example.org",
    )
    assert signer.load_with_value("change-email", without, 3600) == (
        "user-1",
        fingerprint(STATE),
        None,
    )


def test_AUTH_16_fingerprint_is_128_bits_of_sha256_of_the_state():
    """The fingerprint is the first 128 bits of SHA-256 over the state, so links mailed
    before an upgrade keep working and two states collide only by brute force."""
    assert fingerprint(STATE) == hashlib.sha256(repr(STATE).encode()).hexdigest()[:32]
    assert len(fingerprint(STATE)) == 32


@pytest.mark.parametrize("payload", [["uid", "fp"], {"uid": "user-1"}, "text", None])
def test_payloads_of_the_wrong_shape_are_refused(payload):
    """A correctly signed payload without uid and fp is still refused."""
    serializer = URLSafeTimedSerializer(SECRET, salt="identity.link.reset-password")
    with pytest.raises(LinkError):
        LinkSigner(SECRET).load("reset-password", serializer.dumps(payload), 3600)


def test_AUTH_16_fingerprint_changes_with_the_state():
    """Any change of the state (new password hash, newer request) changes the fingerprint."""
    changed = ("reset-password", "user-1", "$argon2id$other", None)
    newer = ("reset-password", "user-1", "$argon2id$hash", "2030-01-01T00:00:00")
    prints = {fingerprint(STATE), fingerprint(changed), fingerprint(newer)}
    assert len(prints) == 3
    assert fingerprint(STATE) == fingerprint(tuple(STATE))


def test_link_error_message_is_safe():
    """The error shown to users names no reason an attacker could use."""
    assert LinkError().message == "This link is invalid or has expired. Please request a new one."
