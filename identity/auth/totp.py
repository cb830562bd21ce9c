"""Authenticator apps (TOTP, RFC 6238): enrolment, verification, removal.

A code is accepted for the current 30-second step or one step either side (clock drift),
and only for a step after the last one accepted: the same code, or an older one, is
refused (replay). Wrong codes are counted on the credential, apart from password failures:
after ``FREE_FAILURES`` in a row, codes are refused for a while that doubles each time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from identity.models.base import new_uuid, utcnow
from identity.models.mfa import TotpCredential
from identity.models.user import User
from identity.sealing import Sealer

DIGITS = 6
INTERVAL = 30
DRIFT_STEPS = 1
FREE_FAILURES = 5
MAX_BLOCK = timedelta(minutes=15)
# An enrolment not confirmed within this time starts over with a new key.
ENROLMENT_LIFETIME = timedelta(minutes=15)


class Outcome(StrEnum):
    OK = "ok"
    WRONG = "wrong"  # not a current code, or one already used
    THROTTLED = "throttled"
    NONE = "none"  # no confirmed authenticator app


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    retry_after: int = 0  # seconds, when throttled


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing in by hand
    uri: str  # otpauth:// for the QR code


def normalise(code: str) -> str:
    return "".join(code.split())


class TotpService:
    def __init__(self, secret_key: str, issuer: str) -> None:
        self._sealer = Sealer(secret_key, info=b"identity totp seeds v1", aad=b"totp")
        # The name the authenticator app shows next to the account.
        self.label = urlsplit(issuer).netloc or "identity"

    def _seed(self, credential: TotpCredential) -> str:
        return self._sealer.open(credential.sealed_secret, credential.id.bytes).decode()

    def confirmed(self, session: Session, user: User) -> TotpCredential | None:
        return session.execute(
            select(TotpCredential).where(
                TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None)
            )
        ).scalar_one_or_none()

    def begin(self, session: Session, user: User, now: datetime | None = None) -> Enrolment:
        """The key to show while enrolling: the one of an enrolment under way, or a new one.
        Refused (ValueError) while a confirmed app exists: it is removed first."""
        now = now or utcnow()
        credential = session.execute(
            select(TotpCredential).where(TotpCredential.user_id == user.id)
        ).scalar_one_or_none()
        if credential is not None and credential.confirmed_at is not None:
            raise ValueError("an authenticator app is already set up")
        if credential is None or now - credential.created_at > ENROLMENT_LIFETIME:
            if credential is not None:
                session.delete(credential)
                session.flush()
            # The id first: the sealed seed is bound to it.
            credential = TotpCredential(id=new_uuid(), user_id=user.id, created_at=now, failures=0)
            credential.sealed_secret = self._sealer.seal(
                pyotp.random_base32().encode(), credential.id.bytes
            )
            session.add(credential)
            session.flush()
        seed = self._seed(credential)
        uri = pyotp.TOTP(seed, digits=DIGITS, interval=INTERVAL).provisioning_uri(
            name=user.email, issuer_name=self.label
        )
        return Enrolment(seed, uri)

    def confirm(self, session: Session, user: User, code: str, now: datetime | None = None) -> bool:
        """The first code from the app: the enrolment counts from now on."""
        now = now or utcnow()
        credential = session.execute(
            select(TotpCredential).where(
                TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_(None)
            )
        ).scalar_one_or_none()
        if credential is None or now - credential.created_at > ENROLMENT_LIFETIME:
            return False
        step = self._matching_step(credential, code, now)
        if step is None:
            return False
        credential.confirmed_at = now
        credential.last_step = step
        credential.last_used_at = now
        session.flush()
        return True

    def verify(self, session: Session, user: User, code: str, now: datetime | None = None) -> Check:
        now = now or utcnow()
        credential = self.confirmed(session, user)
        if credential is None:
            return Check(Outcome.NONE)
        if credential.blocked_until is not None and credential.blocked_until > now:
            wait = credential.blocked_until - now
            return Check(Outcome.THROTTLED, max(1, int(wait.total_seconds() + 0.999)))
        step = self._matching_step(credential, code, now)
        if step is None:
            credential.failures += 1
            if credential.failures >= FREE_FAILURES:
                doubling = min(credential.failures - FREE_FAILURES, 10)
                credential.blocked_until = now + min(timedelta(seconds=30 << doubling), MAX_BLOCK)
            session.flush()
            return Check(Outcome.WRONG)
        credential.last_step = step
        credential.last_used_at = now
        credential.failures = 0
        credential.blocked_until = None
        session.flush()
        return Check(Outcome.OK)

    def remove(self, session: Session, user: User) -> bool:
        """Remove the user's app (confirmed or not); whether there was a confirmed one."""
        had = self.confirmed(session, user) is not None
        session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
        return had

    def _matching_step(self, credential: TotpCredential, code: str, now: datetime) -> int | None:
        """The time step ``code`` belongs to, if it is current (within the drift) and after
        the last step accepted."""
        code = normalise(code)
        # ASCII only: str.isdigit() also accepts other scripts' digits, which
        # hmac.compare_digest refuses with a TypeError.
        if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
            return None
        totp = pyotp.TOTP(self._seed(credential), digits=DIGITS, interval=INTERVAL)
        current = totp.timecode(now)
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if credential.last_step is not None and step <= credential.last_step:
                continue
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None
