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
from identity.models.mfa import TotpCredential, WebAuthnCredential
from identity.models.privacy import ERASURE, PrivacyJob
from identity.models.user import User


def pending(session: Session, user_id: uuid.UUID) -> PrivacyJob | None:
    """The user's scheduled erasure, if any."""
    return (
        session.execute(
            select(PrivacyJob)
            .where(PrivacyJob.user_id == user_id, PrivacyJob.kind == ERASURE)
            .order_by(PrivacyJob.created_at)
        )
        .scalars()
        .first()
    )


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
    with their password during the cooling-off period: True when it is active again. Not
    an operator's request, not an account someone else disabled meanwhile, and not for
    people with a second factor, whom the password alone does not prove (the link in
    their mail calls it off)."""
    job = pending(session, user.id)
    if job is None or job.by_operator or not job.disabled_account or user.disabled_at is None:
        return False
    second = session.execute(
        select(TotpCredential.id)
        .where(TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None))
        .union_all(select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user.id))
        .limit(1)
    ).first()
    if second is not None:
        return False
    cancel(session, user)
    return user.disabled_at is None


def disabled_by_someone_else(session: Session, user_id: uuid.UUID) -> None:
    """An operator disabled the account during the cooling-off: calling the erasure off
    must not enable it again."""
    job = pending(session, user_id)
    if job is not None:
        job.disabled_account = False
