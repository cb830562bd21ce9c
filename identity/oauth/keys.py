"""Signing keys: generation, encryption at rest, rotation, and the in-process key ring.

Private JWKs are stored encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from
the secret key, so a database dump alone cannot sign tokens (REL-12). Each worker loads the
keys once and reloads them when they may have changed (every ``RELOAD_INTERVAL`` seconds, or
at once when a token names an unknown ``kid``), so a rotation reaches every instance without
restarts and without a database read per request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.errors import ConfigError, InvalidInput
from identity.models.base import utcnow
from identity.models.oauth import SigningKey
from identity.sealing import Sealer, SealError

# Algorithms this server signs with; RS256 is mandatory for OpenID Connect.
ALGORITHMS = ("ES256", "RS256", "EdDSA")
RELOAD_INTERVAL = 60.0
_UNKNOWN_KID_RELOAD_INTERVAL = 5.0


class KeyCipher:
    """Private JWKs sealed with AES-256-GCM under a key derived from the server secret."""

    def __init__(self, secret_key: str) -> None:
        self._sealer = Sealer(secret_key, info=b"identity signing keys v1", aad=b"signing-key")

    def encrypt(self, data: dict[str, Any]) -> str:
        return self._sealer.seal(json.dumps(data).encode())

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            plain = self._sealer.open(token)
        except SealError:  # a different secret key, or corrupted data
            raise ConfigError(
                "signing keys cannot be decrypted: IDENTITY_SECRET_KEY differs from the one "
                "they were created with (restore it, see docs/operations.md)"
            ) from None
        return json.loads(plain)  # type: ignore[no-any-return]


def generate_jwk(alg: str) -> Key:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg == "RS256":
        return RSAKey.generate_key(3072)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    raise InvalidInput(f"unsupported signing algorithm: {alg}")


def create_key(
    session: Session, cipher: KeyCipher, alg: str, active_from: datetime | None = None
) -> SigningKey:
    key = generate_jwk(alg)
    kid = key.thumbprint()  # RFC 7638: stable and distinct per key
    public = dict(key.as_dict(private=False), kid=kid, alg=alg, use="sig")
    row = SigningKey(
        kid=kid,
        alg=alg,
        public_jwk=public,
        private_jwk_encrypted=cipher.encrypt(key.as_dict(private=True)),
        created_at=utcnow(),
        active_from=active_from or utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def ensure_keys(session: Session, cipher: KeyCipher, algs: tuple[str, ...]) -> list[SigningKey]:
    """Create an active key for each algorithm that has none (``identity init``)."""
    created = []
    now = utcnow()
    for alg in algs:
        if not any(k.alg == alg and k.retired_at is None for k in _published(session, now)):
            created.append(create_key(session, cipher, alg, active_from=now))
    return created


def rotate(
    session: Session, cipher: KeyCipher, alg: str, publish_ahead: int, max_token_lifetime: int
) -> SigningKey:
    """Publish a new key now, let it sign after ``publish_ahead`` seconds, and retire the
    keys it replaces at that moment; they stay published until their tokens expire."""
    now = utcnow()
    new = create_key(session, cipher, alg, active_from=now + timedelta(seconds=publish_ahead))
    for old in _published(session, now):
        if old.alg == alg and old.kid != new.kid and old.retired_at is None:
            old.retired_at = new.active_from
            old.unpublish_at = new.active_from + timedelta(seconds=max_token_lifetime)
    return new


def retire(session: Session, kid: str, max_token_lifetime: int, immediately: bool) -> SigningKey:
    """Stop signing with a key. ``immediately`` also unpublishes it (a compromised key):
    tokens it signed stop verifying at once."""
    row = session.get(SigningKey, kid)
    if row is None:
        raise InvalidInput(f"no signing key {kid}")
    now = utcnow()
    others = [
        k
        for k in _published(session, now)
        if k.alg == row.alg and k.kid != kid and k.retired_at is None
    ]
    if not others:
        raise InvalidInput(f"{kid} is the only {row.alg} key; run `identity keys rotate` first")
    row.retired_at = row.retired_at or now
    row.unpublish_at = now if immediately else now + timedelta(seconds=max_token_lifetime)
    for other in others:  # a successor that was only published starts signing now
        other.active_from = min(other.active_from, now)
    return row


def _published(session: Session, now: datetime) -> list[SigningKey]:
    rows = session.execute(select(SigningKey).order_by(SigningKey.created_at)).scalars()
    return [k for k in rows if k.unpublish_at is None or k.unpublish_at > now]


def key_status(row: SigningKey, now: datetime) -> str:
    if row.unpublish_at is not None and row.unpublish_at <= now:
        return "unpublished"
    if row.retired_at is not None and row.retired_at <= now:
        return "retired"
    if row.active_from > now:
        return "next"
    return "active"


@dataclass
class KeyRing:
    """Keys of this process: signing keys per algorithm and verification keys by kid."""

    signing: dict[str, tuple[str, Key]] = field(default_factory=dict)
    verifying: dict[str, tuple[str, Key]] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    loaded_at: float = 0.0
    # The soonest moment a key changes state (activates, retires, is unpublished).
    next_change: float = float("inf")
    # Imported keys by (kid, encrypted JWK): a reload imports only keys it has not seen.
    imported: dict[tuple[str, str], Key] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, cipher: KeyCipher, previous: KeyRing | None = None) -> KeyRing:
        """The published keys. Decrypting and importing a key is slow (about 0.2 s for a
        3072-bit RSA key, which the library checks on import), so keys that ``previous``
        already imported from the very same stored value are reused; a reload is then one
        query."""
        now = utcnow()
        ring = cls(loaded_at=time.monotonic())
        known = previous.imported if previous is not None else {}
        published = _published(session, now)
        for row in published:
            stored = (row.kid, row.private_jwk_encrypted)
            key = known.get(stored)
            if key is None:
                key = import_key(cipher.decrypt(row.private_jwk_encrypted))
            ring.imported[stored] = key
            ring.verifying[row.kid] = (row.alg, key)
            ring.jwks["keys"].append(row.public_jwk)
            if key_status(row, now) == "active":
                # The newest active key of each algorithm signs.
                ring.signing[row.alg] = (row.kid, key)
            for moment in (row.active_from, row.retired_at, row.unpublish_at):
                if moment is not None and moment > now:
                    delay = (moment - now).total_seconds()
                    ring.next_change = min(ring.next_change, ring.loaded_at + delay)
        return ring


def _stale(ring: KeyRing | None) -> bool:
    now = time.monotonic()
    return ring is None or now - ring.loaded_at > RELOAD_INTERVAL or now >= ring.next_change


class KeyStore:
    """Thread-safe holder of the current KeyRing, reloaded when it may be stale."""

    def __init__(self, cipher: KeyCipher) -> None:
        self.cipher = cipher
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self._last_forced = 0.0

    def ring(self, session: Session) -> KeyRing:
        ring = self._ring
        if _stale(ring):
            with self._lock:
                ring = self._ring
                if _stale(ring):  # unless another thread reloaded it while this one waited
                    ring = self._ring = KeyRing.load(session, self.cipher, ring)
        assert ring is not None
        return ring

    def verification_key(self, session: Session, kid: str) -> tuple[str, Key] | None:
        ring = self.ring(session)
        found = ring.verifying.get(kid)
        now = time.monotonic()
        if found is None and now - self._last_forced > _UNKNOWN_KID_RELOAD_INTERVAL:
            # Another instance may have rotated; look once more, at most every few seconds.
            self._last_forced = now
            with self._lock:
                ring = self._ring = KeyRing.load(session, self.cipher, self._ring)
            found = ring.verifying.get(kid)
        return found

    def invalidate(self) -> None:
        self._ring = None
