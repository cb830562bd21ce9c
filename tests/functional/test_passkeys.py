"""Passkeys checked with attestation and assertion objects made here (an EC P-256 key and
the WebAuthn byte layouts), so each rule is tested without a browser: origin, challenge,
relying party, user verification for a passkey alone, and the signature counter. The
whole ceremony in Chromium is in tests/integration/test_browser_mfa.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

ISSUER = "http://localhost:8000"
RP_ID = "localhost"
UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Authenticator:
    """A software authenticator: one key pair, one credential id, a counter."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    counter: int = 0

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def client_data(self, kind: str, challenge: str, origin: str = ISSUER) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def register(self, challenge: str, *, origin: str = ISSUER, rp_id: str = RP_ID) -> str:
        attested = (
            bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
        ) + self.cose_key()
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", self.counter)
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(
                        self.client_data("webauthn.create", challenge, origin)
                    ),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
            }
        )

    def assert_(
        self,
        challenge: str,
        *,
        verified: bool = True,
        counter: int | None = None,
        origin: str = ISSUER,
    ) -> str:
        self.counter = self.counter + 1 if counter is None else counter
        flags = UP | (UV if verified else 0)
        auth_data = (
            hashlib.sha256(RP_ID.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.counter)
        )
        client_data = self.client_data("webauthn.get", challenge, origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                },
                "clientExtensionResults": {},
            }
        )


@pytest.fixture
def passkeys(app: Flask, user: uuid.UUID) -> Any:
    from identity.auth.passkeys import Passkeys
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        yield Passkeys(ISSUER), db.session, db.session.get(User, user)


def registered(passkeys: Any, device: Authenticator) -> Any:
    service, session, user = passkeys
    challenge = service.registration(session, user).challenge
    return service.register(session, user, device.register(challenge), challenge, "Laptop")


def test_AUTH_31_a_passkey_registers_and_signs_in(passkeys: Any) -> None:
    service, session, user = passkeys
    device = Authenticator()
    credential = registered(passkeys, device)
    assert credential.name == "Laptop" and credential.discoverable
    challenge = service.authentication(session, None).challenge
    used = service.authenticate(session, device.assert_(challenge), challenge, None)
    assert used.credential.user_id == user.id
    assert used.amr == ["hwk", "mfa"]
    assert credential.sign_count == 1 and credential.last_used_at is not None


def test_AUTH_31_registration_from_another_origin_or_rp_is_refused(passkeys: Any) -> None:
    from identity.auth.passkeys import PasskeyError

    service, session, user = passkeys
    for answer in (
        lambda c: Authenticator().register(c, origin="https://evil.example"),
        lambda c: Authenticator().register(c, rp_id="evil.example"),
    ):
        challenge = service.registration(session, user).challenge
        with pytest.raises(PasskeyError):
            service.register(session, user, answer(challenge), challenge, "x")
    challenge = service.registration(session, user).challenge
    other = service.registration(session, user).challenge
    with pytest.raises(PasskeyError):  # signed over another challenge
        service.register(session, user, Authenticator().register(other), challenge, "x")


def test_AUTH_31_an_assertion_for_another_challenge_or_origin_is_refused(passkeys: Any) -> None:
    from identity.auth.passkeys import PasskeyError

    service, session, user = passkeys
    device = Authenticator()
    registered(passkeys, device)
    challenge = service.authentication(session, user).challenge
    stale = service.authentication(session, user).challenge
    with pytest.raises(PasskeyError):
        service.authenticate(session, device.assert_(stale), challenge, user)
    with pytest.raises(PasskeyError):
        service.authenticate(
            session, device.assert_(challenge, origin="https://evil.example"), challenge, user
        )


def test_AUTH_31_a_passkey_alone_must_verify_the_user(passkeys: Any) -> None:
    from identity.auth.passkeys import PasskeyError

    service, session, user = passkeys
    device = Authenticator()
    registered(passkeys, device)
    challenge = service.authentication(session, None).challenge
    with pytest.raises(PasskeyError):
        service.authenticate(session, device.assert_(challenge, verified=False), challenge, None)
    # After the password, user presence is enough: the passkey is the second factor.
    challenge = service.authentication(session, user).challenge
    used = service.authenticate(session, device.assert_(challenge, verified=False), challenge, user)
    assert used.amr == ["hwk"]


def test_AUTH_31_a_counter_going_backwards_is_refused(passkeys: Any) -> None:
    """A cloned authenticator shows up as a counter that did not grow."""
    from identity.auth.passkeys import PasskeyError

    service, session, user = passkeys
    device = Authenticator()
    registered(passkeys, device)
    challenge = service.authentication(session, user).challenge
    service.authenticate(session, device.assert_(challenge, counter=5), challenge, user)
    challenge = service.authentication(session, user).challenge
    with pytest.raises(PasskeyError):
        service.authenticate(session, device.assert_(challenge, counter=3), challenge, user)


@pytest.fixture
def bob(make_user: Any) -> uuid.UUID:
    return make_user("bob@example.org")  # type: ignore[no-any-return]


def test_AUTH_31_someone_elses_passkey_is_not_a_second_factor(
    bob: uuid.UUID, passkeys: Any
) -> None:
    from identity.auth.passkeys import PasskeyError
    from identity.models.user import User

    service, session, _ = passkeys
    device = Authenticator()
    registered(passkeys, device)
    other = session.get(User, bob)
    challenge = service.authentication(session, other).challenge
    with pytest.raises(PasskeyError):
        service.authenticate(session, device.assert_(challenge), challenge, other)


def test_passkey_sign_in_options_are_rate_limited(app_factory: Any) -> None:
    """Each call without a pending sign-in stores one: every call counts (INPUT limits)."""
    app = app_factory(ratelimit_sign_in="3/minute", ratelimit_enabled=True)
    client = app.test_client()
    page = client.get("/sign-in")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert token
    headers = {"X-CSRFToken": token.group(1)}
    answers = [
        client.post("/sign-in/passkey/options", json={}, headers=headers).status_code
        for _ in range(4)
    ]
    assert answers == [200, 200, 200, 429]
