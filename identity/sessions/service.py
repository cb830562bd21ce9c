"""Login sessions: server-side records behind an opaque random cookie (SESS-01..07)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.orm import Session

from identity import audit
from identity.database import rowcount
from identity.exceptions import NotFound
from identity.models.base import utcnow
from identity.models.session import LoginSession
from identity.models.user import User
from identity.random_tokens import new_token, token_hash
from identity.revocation import revoke_session_grants

# last_seen_at is written at most this often, so browsing does not write on every request.
TOUCH_INTERVAL = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 100  # longer than any session cookie this server sets


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout: timedelta
    absolute_timeout: timedelta


def start(
    session: Session,
    user: User,
    policy: SessionPolicy,
    *,
    amr: list[str],
    acr: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    sid: str | None = None,
    now: datetime | None = None,
) -> tuple[str, LoginSession]:
    """Create a session record; returns the cookie value (shown once) and the record.

    ``sid`` carries the public session id over when the same user signs in again in the
    same browser: the cookie changes (SESS-02), the grants bound to the session stay.
    """
    now = now or utcnow()
    token = new_token()
    record = LoginSession(
        id_hash=token_hash(token),
        sid=sid or new_token(16),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.absolute_timeout,
        auth_time=now,
        amr=amr,
        acr=acr,
        ip=ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(record)
    return token, record


def resolve(
    session: Session, token: str, policy: SessionPolicy, now: datetime | None = None
) -> LoginSession | None:
    """The live session for a cookie value; expired or orphaned records are deleted."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    now = now or utcnow()
    record = session.get(LoginSession, token_hash(token))
    if record is None:
        return None
    idle_expired = record.last_seen_at + policy.idle_timeout <= now
    if record.expires_at <= now or idle_expired or not record.user.is_active:
        session.delete(record)
        return None
    if now - record.last_seen_at >= TOUCH_INTERVAL:
        record.last_seen_at = now
    return record


def alive_by_sid(
    session: Session, sid: str, policy: SessionPolicy, now: datetime | None = None
) -> LoginSession | None:
    """The live session with this public id, touched as activity (a client refreshing its
    tokens counts as use, as in Keycloak); None when it ended or timed out."""
    now = now or utcnow()
    record = session.execute(
        select(LoginSession).where(LoginSession.sid == sid)
    ).scalar_one_or_none()
    if record is None:
        return None
    if record.expires_at <= now or record.last_seen_at + policy.idle_timeout <= now:
        return None
    if now - record.last_seen_at >= TOUCH_INTERVAL:
        record.last_seen_at = now
    return record


def end(session: Session, token: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.id_hash == token_hash(token)))


def end_all(session: Session, user_id: uuid.UUID, keep: str | None = None) -> int:
    """End every session of a user, optionally keeping one (by its stored hash)."""
    statement = delete(LoginSession).where(LoginSession.user_id == user_id)
    if keep is not None:
        statement = statement.where(LoginSession.id_hash != keep)
    return rowcount(session.execute(statement))


def live(policy: SessionPolicy, now: datetime) -> ColumnElement[bool]:
    """The SQL condition of a live session at ``now``: past neither its absolute nor its idle
    timeout (what ``resolve`` checks on one record). The console's list and count use it."""
    return and_(
        LoginSession.expires_at > now,
        LoginSession.last_seen_at > now - policy.idle_timeout,
    )


def active_of(
    session: Session, user_id: uuid.UUID, policy: SessionPolicy, now: datetime | None = None
) -> list[LoginSession]:
    """A user's live sessions (neither idle nor past their absolute timeout), newest first."""
    now = now or utcnow()
    query = (
        select(LoginSession)
        .where(LoginSession.user_id == user_id, live(policy, now))
        .order_by(LoginSession.created_at.desc(), LoginSession.sid)
    )
    return list(session.execute(query).scalars())


def active_sessions(
    session: Session,
    policy: SessionPolicy,
    *,
    user_id: uuid.UUID | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> list[LoginSession]:
    """Everyone's live sessions (or one user's), newest first, with their users: the
    console's list. ``after`` is the (created_at, sid) of the last one of the previous
    page; at most ``limit`` of them."""
    now = now or utcnow()
    query = select(LoginSession).where(live(policy, now))
    if user_id is not None:
        query = query.where(LoginSession.user_id == user_id)
    if after is not None:
        created_at, sid = after
        query = query.where(
            (LoginSession.created_at < created_at)
            | ((LoginSession.created_at == created_at) & (LoginSession.sid > sid))
        )
    query = query.order_by(LoginSession.created_at.desc(), LoginSession.sid).limit(limit)
    return list(session.execute(query).scalars())


def revoke(
    session: Session,
    user_id: uuid.UUID,
    sid: str | None,
    *,
    access_token_lifetime: int,
    actor_id: uuid.UUID | None = None,
    client_id: str | None = None,
    keep_sid: str | None = None,
) -> int:
    """An administrator, or the user, ends one session of a user (by its public id; another
    user's is NotFound), or all of them (``sid`` None) but ``keep_sid``, with the grants
    bound to each, as signing out there would (SESS-06). Audited with who asked; returns
    how many ended."""
    query = select(LoginSession.sid).where(LoginSession.user_id == user_id)
    if sid is not None:
        query = query.where(LoginSession.sid == sid)
    elif keep_sid is not None:
        query = query.where(LoginSession.sid != keep_sid)
    sids = list(session.execute(query).scalars())
    if sid is not None and not sids:
        raise NotFound(f"the user has no session {sid!r}")
    for each in sids:
        revoke_session_grants(session, each, access_token_lifetime)
    session.execute(
        delete(LoginSession).where(LoginSession.user_id == user_id, LoginSession.sid.in_(sids))
    )
    audit.record(
        session,
        "session.revoked" if sid is not None else "session.revoked_all",
        actor_id=actor_id,
        subject_id=user_id,
        client_id=client_id,
        sessions=sids,
    )
    return len(sids)


def purge_expired(session: Session, policy: SessionPolicy, now: datetime | None = None) -> int:
    now = now or utcnow()
    statement = delete(LoginSession).where(
        (LoginSession.expires_at <= now) | (LoginSession.last_seen_at <= now - policy.idle_timeout)
    )
    return rowcount(session.execute(statement))
