"""Signing keys: generation, encryption at rest, rotation, and the in-process key ring.

Private JWKs are stored encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from
the secret key, so a database dump alone cannot sign tokens (REL-12). Each worker loads the
keys once and reloads them when they changed: every change publishes the ``keys`` topic
(identity.changes), which reaches every worker of every instance within a second; a worker
whose change feed is not confirmed lately reloads every ``changes.FALLBACK_TTL`` seconds
instead. Keys also reload at each key's own moments (activation, retirement) and, at most
every few seconds, when a token names an unknown ``kid``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit, changes
from identity.exceptions import ConfigError, Conflict, InvalidInput, NotFound
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
    changes.publish(session, changes.KEYS)
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
    session: Session,
    cipher: KeyCipher,
    alg: str,
    publish_ahead: int,
    max_token_lifetime: int,
    *,
    actor_id: uuid.UUID | None = None,
) -> SigningKey:
    """Publish a new key now, let it sign after ``publish_ahead`` seconds, and retire the
    keys it replaces at that moment; they stay published until their tokens expire."""
    now = utcnow()
    new = create_key(session, cipher, alg, active_from=now + timedelta(seconds=publish_ahead))
    replaced = []
    for old in _published(session, now):
        if old.alg == alg and old.kid != new.kid and old.retired_at is None:
            old.retired_at = new.active_from
            old.unpublish_at = new.active_from + timedelta(seconds=max_token_lifetime)
            replaced.append(old.kid)
    session.flush()
    changes.publish(session, changes.KEYS)
    audit.record(
        session,
        "key.rotate",
        actor_id=actor_id,
        kid=new.kid,
        alg=alg,
        active_from=new.active_from.isoformat(),
        replaces=replaced,
    )
    return new


def rotate_keys(
    session: Session,
    cipher: KeyCipher,
    *,
    alg: str | None,
    default_alg: str,
    publish_ahead: int,
    max_token_lifetime: int,
    actor_id: uuid.UUID | None = None,
) -> list[SigningKey]:
    """Rotate the key of ``alg``, or of every algorithm in use when None (``default_alg``
    when no key is in use): what `identity keys rotate` and the admin API do."""
    if alg is not None and alg not in ALGORITHMS:
        raise InvalidInput(f"unsupported signing algorithm: {alg}")
    in_use = {
        k.alg
        for k in session.execute(
            select(SigningKey).where(SigningKey.retired_at.is_(None))
        ).scalars()
    }
    return [
        rotate(session, cipher, name, publish_ahead, max_token_lifetime, actor_id=actor_id)
        for name in ([alg] if alg else sorted(in_use or {default_alg}))
    ]


def longest_token_lifetime(access_token_lifetime: int, id_token_lifetime: int) -> int:
    """How long a retired key stays published: the longest token it signed may still be
    presented (with a minute of clock skew)."""
    return max(access_token_lifetime, id_token_lifetime) + 60


def retire(
    session: Session,
    kid: str,
    max_token_lifetime: int,
    immediately: bool,
    *,
    actor_id: uuid.UUID | None = None,
) -> SigningKey:
    """Stop signing with a key. ``immediately`` also unpublishes it (a compromised key):
    tokens it signed stop verifying at once. The only key of its algorithm that signs
    cannot be retired (nothing would sign): rotate first. An unpublish already scheduled
    is never postponed."""
    row = session.get(SigningKey, kid)
    if row is None:
        raise NotFound(f"no signing key {kid}")
    now = utcnow()
    others = [
        k
        for k in _published(session, now)
        if k.alg == row.alg and k.kid != kid and k.retired_at is None
    ]
    if not others:
        raise Conflict(
            f"{kid} is the only {row.alg} key: rotate first (`identity keys rotate`, or"
            " POST /api/v1/keys/rotate)"
        )
    row.retired_at = row.retired_at or now
    unpublish_at = now if immediately else now + timedelta(seconds=max_token_lifetime)
    if row.unpublish_at is None or unpublish_at < row.unpublish_at:
        row.unpublish_at = unpublish_at
    for other in others:  # a successor that was only published starts signing now
        other.active_from = min(other.active_from, now)
    session.flush()
    changes.publish(session, changes.KEYS)
    audit.record(
        session,
        "key.retire",
        actor_id=actor_id,
        kid=kid,
        alg=row.alg,
        immediately=immediately,
        unpublish_at=row.unpublish_at.isoformat(),
    )
    return row


def list_keys(session: Session) -> list[SigningKey]:
    """Every stored key, oldest first (unpublished ones too, until purged)."""
    return list(session.execute(select(SigningKey).order_by(SigningKey.created_at)).scalars())


def summary(row: SigningKey, now: datetime) -> dict[str, Any]:
    """What an operator sees of a key: never key material."""
    return {
        "kid": row.kid,
        "alg": row.alg,
        "status": key_status(row, now),
        "created_at": row.created_at.isoformat(),
        "active_from": row.active_from.isoformat(),
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
        "unpublish_at": row.unpublish_at.isoformat() if row.unpublish_at else None,
    }


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
    # The change generation of the keys topic this ring was loaded at.
    generation: int = 0

    @classmethod
    def load(
        cls,
        session: Session,
        cipher: KeyCipher,
        previous: KeyRing | None = None,
        generation: int = 0,
    ) -> KeyRing:
        """The published keys. Decrypting and importing a key is slow (about 0.2 s for a
        3072-bit RSA key, which the library checks on import), so keys that ``previous``
        already imported from the very same stored value are reused; a reload is then one
        query."""
        now = utcnow()
        ring = cls(loaded_at=time.monotonic(), generation=generation)
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


class KeyStore:
    """Thread-safe holder of the current KeyRing, reloaded when it may be stale."""

    def __init__(self, cipher: KeyCipher, feed: changes.ChangeFeed | None = None) -> None:
        self.cipher = cipher
        self.feed = feed or changes.ChangeFeed()
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self._last_forced = 0.0

    def _stale(self, ring: KeyRing | None) -> bool:
        if ring is None or ring.generation != self.feed.generation(changes.KEYS):
            return True
        age = time.monotonic() - ring.loaded_at
        return age > self.feed.ttl(RELOAD_INTERVAL) or time.monotonic() >= ring.next_change

    def _load(self, session: Session, previous: KeyRing | None) -> KeyRing:
        # The generation is read before the keys: a change in between reloads once more.
        generation = self.feed.generation(changes.KEYS)
        return KeyRing.load(session, self.cipher, previous, generation)

    def ring(self, session: Session) -> KeyRing:
        ring = self._ring
        if self._stale(ring):
            with self._lock:
                ring = self._ring
                if self._stale(ring):  # unless another thread reloaded it while this one waited
                    ring = self._ring = self._load(session, ring)
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
                ring = self._ring = self._load(session, self._ring)
            found = ring.verifying.get(kid)
        return found

    def invalidate(self) -> None:
        self._ring = None
