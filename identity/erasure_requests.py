"""A scheduled erasure (GDPR Art. 17) and calling it off.

Shared by the privacy pages and commands, which schedule and run erasures
(identity.privacy.erasure), and by the sign-in, since signing in again during the
cooling-off period cancels the person's own request.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit
from identity.models.privacy import ERASURE, PrivacyJob
from identity.models.user import User


def pending(session: Session, user_id: uuid.UUID) -> PrivacyJob | None:
    """The user's scheduled erasure, if any."""
    return session.execute(
        select(PrivacyJob).where(PrivacyJob.user_id == user_id, PrivacyJob.kind == ERASURE)
    ).scalar_one_or_none()


def cancel(session: Session, user: User, *, actor_id: uuid.UUID | None = None) -> bool:
    """Call off the user's scheduled erasure; the account is enabled again if the request
    disabled it. False when none was scheduled."""
    job = pending(session, user.id)
    if job is None:
        return False
    if job.disabled_account:
        user.disabled_at = None
    session.delete(job)
    audit.record(
        session, "gdpr.erasure_cancelled", actor_id=actor_id or user.id, subject_id=user.id
    )
    session.flush()
    return True


def cancelled_by_sign_in(session: Session, user: User) -> bool:
    """A disabled account whose owner asked for its erasure comes back when they sign in
    with their password during the cooling-off period (not one an operator scheduled)."""
    job = pending(session, user.id)
    if job is None or job.by_operator or user.disabled_at is None:
        return False
    return cancel(session, user)
