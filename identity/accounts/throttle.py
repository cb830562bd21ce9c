"""Per-account sign-in throttling with growing delays (AUTH-08).

Failures are counted per email address, whether or not it has an account, so the throttle
reveals nothing. After ``free_attempts`` failures each further failure doubles the wait
before the next attempt is even checked, up to ``max_delay``: guessing slows to a crawl, yet
the real user is never locked out for long. A browser that signed in to the account before
holds a signed device cookie and skips the account throttle entirely (OWASP "device
cookies"), so an attacker cannot lock the owner out; per-IP rate limits still apply to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete
from sqlalchemy.orm import Session

from identity.database import dialect_insert
from identity.models.base import utcnow
from identity.models.session import LoginThrottle

# Failures older than this are forgotten.
FAILURE_MEMORY = timedelta(hours=24)
DEVICE_COOKIE_MAX_AGE = 180 * 86400
MAX_DEVICE_COOKIE_LENGTH = 500  # a signed throttle key is far shorter


@dataclass(frozen=True)
class ThrottlePolicy:
    free_attempts: int
    max_delay: int

    def delay_after(self, failures: int) -> int:
        if failures < self.free_attempts:
            return 0
        return int(min(2 ** (failures - self.free_attempts), self.max_delay))


def throttle_key(email: str) -> str:
    return hashlib.sha256(f"sign-in:{email}".encode()).hexdigest()


def wait_seconds(session: Session, email: str, now: datetime | None = None) -> int:
    """Seconds before this email may try again; 0 when it may try now."""
    now = now or utcnow()
    row = session.get(LoginThrottle, throttle_key(email))
    if row is None or row.blocked_until is None or row.blocked_until <= now:
        return 0
    return max(1, int((row.blocked_until - now).total_seconds() + 0.999))


def register_failure(
    session: Session, email: str, policy: ThrottlePolicy, now: datetime | None = None
) -> None:
    now = now or utcnow()
    key = throttle_key(email)
    # Insert-if-missing, then lock the row: concurrent failures are all counted.
    session.execute(
        dialect_insert(session, LoginThrottle)
        .values(key_hash=key, failures=0, last_failure_at=now)
        .on_conflict_do_nothing(index_elements=["key_hash"])
    )
    row = session.get(LoginThrottle, key, populate_existing=True, with_for_update=True)
    assert row is not None
    if row.last_failure_at < now - FAILURE_MEMORY:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    delay = policy.delay_after(row.failures)
    row.blocked_until = now + timedelta(seconds=delay) if delay else None


def clear(session: Session, email: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key_hash == throttle_key(email)))


class DeviceCookie:
    """Signed proof that this browser signed in to an account before."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="identity.device")

    def issue(self, email: str) -> str:
        return self._serializer.dumps(throttle_key(email))

    def vouches_for(self, cookie: str | None, email: str) -> bool:
        if not cookie or len(cookie) > MAX_DEVICE_COOKIE_LENGTH:
            return False
        try:
            key = self._serializer.loads(cookie, max_age=DEVICE_COOKIE_MAX_AGE)
        except BadSignature:
            return False
        return bool(key == throttle_key(email))
