"""Operator actions on accounts: invitations and disabling (CLI today, the admin
console and API later)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit
from identity.accounts.service import normalize_email
from identity.errors import InvalidInput
from identity.models.base import utcnow
from identity.models.user import Invitation, Role, User
from identity.oauth.tokens import revoke_user_tokens
from identity.runtime import Runtime
from identity.sessions import service as login_sessions
from identity.tokens import new_token, token_hash


def set_disabled(
    session: Session,
    user: User,
    disabled: bool,
    *,
    access_token_lifetime: int,
    actor_id: uuid.UUID | None = None,
) -> None:
    """Disable or re-enable an account. Disabling ends every session and every grant at
    once: cookies, refresh tokens and access tokens all stop working (SESS-04)."""
    if disabled:
        user.disabled_at = user.disabled_at or utcnow()
        login_sessions.end_all(session, user.id)
        revoke_user_tokens(session, user.id, access_token_lifetime)
    else:
        user.disabled_at = None
    event = "user.disabled" if disabled else "user.enabled"
    audit.record(session, event, actor_id=actor_id, subject_id=user.id)


def create_invitation(
    session: Session,
    rt: Runtime,
    *,
    email: str | None = None,
    role: str | None = None,
    lifetime: int | None = None,
    actor_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> str:
    """Create a single-use invitation and return its link (the token is shown only here)."""
    now = now or utcnow()
    role_row = None
    if role is not None:
        role_row = session.execute(select(Role).where(Role.name == role)).scalar_one_or_none()
        if role_row is None:
            raise InvalidInput(f"unknown role: {role}")
    token = new_token()
    invitation = Invitation(
        token_hash=token_hash(token),
        email=normalize_email(email) if email else None,
        role=role_row,
        created_by_id=actor_id,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime or rt.settings.invitation_lifetime),
    )
    session.add(invitation)
    session.flush()
    audit.record(session, "invitation.create", actor_id=actor_id, email=invitation.email, role=role)
    return f"{rt.settings.issuer}/register?invite={token}"
