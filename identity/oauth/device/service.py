"""RFC 8628 section 3.3: the user's side of the device flow. The code typed on the page finds
a pending request; the signed-in user approves or denies it, and the device's next poll at
the token endpoint (identity.oauth.device.grant) learns the answer."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit
from identity.models.base import utcnow
from identity.models.oauth import DeviceAuthorization
from identity.models.session import LoginSession
from identity.models.user import User
from identity.oauth.token.endpoints import user_code_digest


def pending_authorization(session: Session, user_code: str) -> DeviceAuthorization | None:
    """The request a user code names, if it still waits for an answer."""
    row = session.execute(
        select(DeviceAuthorization).where(
            DeviceAuthorization.user_code_hash == user_code_digest(user_code)
        )
    ).scalar_one_or_none()
    if row is None or row.status != "pending" or row.expires_at <= utcnow():
        return None
    return row


def decide(
    session: Session, row: DeviceAuthorization, user: User, login: LoginSession, approved: bool
) -> None:
    """Record the user's answer, with how they signed in (for the ID token), and audit it."""
    row.status = "approved" if approved else "denied"
    row.user_id = user.id
    row.auth_time = login.auth_time
    row.amr = list(login.amr)
    row.acr = login.acr
    audit.record(
        session,
        "oauth.device_authorized",
        outcome="success" if approved else "failure",
        actor_id=user.id,
        subject_id=user.id,
        client_id=row.client.client_id,
    )
