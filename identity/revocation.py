"""Ending grants: of a user, of a login session, of one refresh-token family.

Accounts (password change, disabling, deletion), login sessions (sign-out) and the OAuth
endpoints (revocation, refresh-token reuse, consent withdrawal) all end grants; they call
this module, which knows only the token tables, so none of them imports another.

Refresh tokens are marked revoked in place. JWT access tokens cannot be recalled, so the
revocation is remembered by key (``jti:``, ``gid:`` family, ``sub:`` user) in
``token_revocations`` until every token it covers has expired; checking a token looks it up.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from identity import changes
from identity.database import upsert
from identity.models.base import utcnow
from identity.models.oauth import (
    AuthorizationCode,
    BackchannelLogout,
    Client,
    RefreshToken,
    TokenRevocation,
)

# Tokens are accepted this long past their expiry (clock skew), so revocations live as long.
CLOCK_LEEWAY = 30


def remember_revocation(session: Session, key: str, lifetime: int) -> None:
    """Upsert a revocation key that lives as long as the tokens it covers."""
    now = utcnow()
    expires = now + timedelta(seconds=lifetime + CLOCK_LEEWAY)
    upsert(
        session,
        TokenRevocation,
        {"key": key, "revoked_at": now, "expires_at": expires},
        index=["key"],
        update={"revoked_at": now, "expires_at": expires},
    )
    # Every process's revocation state (identity.revocation_state) re-reads the key.
    changes.notify(session, f"rev {key}")


def revoke_family(session: Session, family_id: uuid.UUID, access_token_lifetime: int) -> None:
    """Revoke every refresh token of a family and the access tokens issued from it."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    remember_revocation(session, f"gid:{family_id}", access_token_lifetime)


def revoke_user_tokens(session: Session, user_id: uuid.UUID, access_token_lifetime: int) -> None:
    """Password change or reset, disabling or deleting a user: every grant ends."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    remember_revocation(session, f"sub:{user_id}", access_token_lifetime)
    queue_backchannel_logouts(session, user_id=user_id)


def revoke_session_grants(session: Session, sid: str, access_token_lifetime: int) -> None:
    """Sign-out ends the grants tied to that login session (not offline_access ones), and
    the clients that took part in it are told (back-channel logout)."""
    queue_backchannel_logouts(session, sid=sid)
    families = session.execute(
        select(RefreshToken.family_id)
        .where(RefreshToken.sid == sid, RefreshToken.revoked_at.is_(None))
        .distinct()
    ).scalars()
    for family_id in list(families):
        revoke_family(session, family_id, access_token_lifetime)


def queue_backchannel_logouts(
    session: Session, *, sid: str | None = None, user_id: uuid.UUID | None = None
) -> int:
    """A logout token for each client that took part in the session ``sid`` (or, with
    ``user_id``, in any session of that user) and registered a ``backchannel_logout_uri``:
    queued here, delivered by ``identity.oauth.backchannel``. Returns how many."""
    if sid is not None:
        refresh_match, code_match = RefreshToken.sid == sid, AuthorizationCode.sid == sid
    else:
        refresh_match = RefreshToken.user_id == user_id
        code_match = AuthorizationCode.user_id == user_id
    rows = [
        *session.execute(select(RefreshToken.client_pk, RefreshToken.user_id).where(refresh_match)),
        *session.execute(
            select(AuthorizationCode.client_pk, AuthorizationCode.user_id).where(code_match)
        ),
    ]
    pairs = {(client_pk, owner) for client_pk, owner in rows}
    if not pairs:
        return 0
    listening = {
        client.id
        for client in session.execute(
            select(Client).where(Client.id.in_({client_pk for client_pk, _ in pairs}))
        ).scalars()
        if client.meta.get("backchannel_logout_uri")
    }
    queued = 0
    for client_pk, owner in sorted(pairs, key=str):
        if client_pk in listening:
            session.add(BackchannelLogout(client_pk=client_pk, user_id=owner, sid=sid, attempts=0))
            queued += 1
    return queued
