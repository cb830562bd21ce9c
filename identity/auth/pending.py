"""Sign-ins waiting for a step: the record between "password right" and "signed in".

The browser holds a random token (a cookie); the server keeps its hash, the user, the
steps done and where to go next, for ``LIFETIME``. Nothing here is a login session, so no
page reached in between counts as signed in. A record allows ``MAX_ATTEMPTS`` wrong codes,
then it is gone and the sign-in starts over with the password.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from identity.models.base import utcnow
from identity.models.mfa import PendingAuthentication
from identity.models.user import User
from identity.random_tokens import new_token, token_hash

LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5


def start(
    session: Session,
    user: User | None,
    amr: list[str],
    next_url: str,
    now: datetime | None = None,
    *,
    challenge: str | None = None,
) -> str:
    """Record the steps done (for a passkey sign-in, none, and nobody known yet); returns
    the token for the browser's cookie."""
    now = now or utcnow()
    token = new_token()
    session.add(
        PendingAuthentication(
            id_hash=token_hash(token),
            user_id=user.id if user is not None else None,
            amr=list(amr),
            challenge=challenge,
            next_url=next_url,
            attempts=0,
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    session.flush()
    return token


def load(
    session: Session, token: str | None, now: datetime | None = None
) -> PendingAuthentication | None:
    if not token:
        return None
    record = session.get(PendingAuthentication, token_hash(token))
    if record is None:
        return None
    if record.expires_at <= (now or utcnow()):
        session.delete(record)
        session.flush()
        return None
    return record


def failed_attempt(session: Session, record: PendingAuthentication) -> bool:
    """Count a wrong code; False when the record is used up (and gone)."""
    record.attempts += 1
    if record.attempts >= MAX_ATTEMPTS:
        session.delete(record)
        session.flush()
        return False
    session.flush()
    return True


def finish(session: Session, record: PendingAuthentication) -> None:
    session.delete(record)
    session.flush()


def end_for_user(session: Session, user: User) -> None:
    """Every sign-in of the user under way (its factors changed)."""
    session.execute(delete(PendingAuthentication).where(PendingAuthentication.user_id == user.id))


def take_challenge(session: Session, record: PendingAuthentication) -> str | None:
    """The WebAuthn challenge issued to this sign-in, once: an answer is checked against it
    at most one time."""
    challenge, record.challenge = record.challenge, None
    session.flush()
    return challenge
