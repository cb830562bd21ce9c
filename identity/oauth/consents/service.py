"""Connected apps: the consents a user gave, and withdrawing one (TOK-14).

Withdrawing a consent also ends every grant the app holds for the user: its refresh
tokens, and through the family revocation keys the access tokens issued with them or
straight from an authorization code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, union
from sqlalchemy.orm import Session

from identity import audit
from identity.database import rowcount
from identity.models.oauth import AuthorizationCode, Client, Consent, RefreshToken
from identity.revocation import revoke_family


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    name: str
    scopes: list[str]
    granted_at: datetime
    client_uri: str | None
    last_used_at: datetime | None = None


def connected_apps(session: Session, user_id: uuid.UUID) -> list[ConnectedApp]:
    rows = session.execute(
        select(Consent, Client)
        .join(Client, Consent.client_pk == Client.id)
        .where(Consent.user_id == user_id)
    ).all()
    # An app is used when the user authorizes it, and when it refreshes its tokens (each
    # refresh issues a new refresh token).
    refreshed = {
        client_pk: issued_at
        for client_pk, issued_at in session.execute(
            select(RefreshToken.client_pk, func.max(RefreshToken.issued_at))
            .where(RefreshToken.user_id == user_id)
            .group_by(RefreshToken.client_pk)
        )
    }
    return sorted(
        (
            ConnectedApp(
                client.client_id,
                client.display_name,
                list(consent.scopes),
                consent.updated_at,
                client.meta.get("client_uri"),
                _latest(consent.last_authorized_at, refreshed.get(client.id)),
            )
            for consent, client in rows
        ),
        key=lambda app: app.name.lower(),
    )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def withdraw(
    session: Session, user_id: uuid.UUID, client_id: str, access_token_lifetime: int
) -> bool:
    """Remove the consent and end the app's grants; False when there was no such consent."""
    client = session.execute(
        select(Client).where(Client.client_id == client_id)
    ).scalar_one_or_none()
    if client is None:
        return False
    removed = rowcount(
        session.execute(
            delete(Consent).where(Consent.user_id == user_id, Consent.client_pk == client.id)
        )
    )
    if not removed:
        return False
    families = session.execute(
        union(
            select(RefreshToken.family_id).where(
                RefreshToken.user_id == user_id, RefreshToken.client_pk == client.id
            ),
            select(AuthorizationCode.family_id).where(
                AuthorizationCode.user_id == user_id, AuthorizationCode.client_pk == client.id
            ),
        )
    ).scalars()
    for family_id in list(families):
        revoke_family(session, family_id, access_token_lifetime)
    audit.record(
        session,
        "oauth.consent_withdrawn",
        actor_id=user_id,
        subject_id=user_id,
        client_id=client_id,
    )
    return True
