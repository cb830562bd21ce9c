"""Retention (GDPR Art. 5(1)(e)): personal data kept no longer than its purpose needs.

Run by the purge (``identity purge``, and every ``IDENTITY_PURGE_INTERVAL`` in ``serve``),
after the expired rows are gone, each run audited with its counts when it changed
anything. Every period is a setting (docs/configuration.md); 0 turns it off.

- addresses, user agents and emails in audit records, and addresses and user agents of
  login sessions, after ``retention_origins_days``;
- the record of mail sent to a person after ``retention_sent_mail_days``;
- data exports whose download link expired;
- inactive accounts: the owner is warned by mail after ``retention_inactive_warn_days``
  without a sign-in, and the account is erased after ``retention_inactive_erase_days``
  if it was warned at least the difference before (a sign-in in between starts over).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from identity import audit
from identity.database import rowcount
from identity.exceptions import Conflict
from identity.models.base import utcnow
from identity.models.privacy import SentMail
from identity.models.session import LoginSession
from identity.models.user import User
from identity.privacy import jobs
from identity.privacy.erasure import Erasure

if TYPE_CHECKING:
    from identity.runtime import Runtime

log = logging.getLogger("identity.privacy")
BATCH = 200  # accounts warned or erased per run at most: a backlog spreads over runs


def apply(session: Session, rt: Runtime, now: datetime | None = None) -> dict[str, int]:
    """Apply every retention period; returns what was removed, by kind. Commits."""
    now = now or utcnow()
    settings = rt.settings
    counts = {"exports": jobs.purge_expired_exports(session, now)}
    if settings.retention_origins_days:
        before = now - timedelta(days=settings.retention_origins_days)
        counts["audit_origins"] = audit.erase_origins(session, before)
        counts["session_origins"] = rowcount(
            session.execute(
                update(LoginSession)
                .where(
                    LoginSession.created_at < before,
                    or_(LoginSession.ip.is_not(None), LoginSession.user_agent.is_not(None)),
                )
                .values(ip=None, user_agent=None)
            )
        )
    if settings.retention_sent_mail_days:
        before = now - timedelta(days=settings.retention_sent_mail_days)
        counts["sent_mails"] = rowcount(
            session.execute(delete(SentMail).where(SentMail.sent_at < before))
        )
    if settings.retention_inactive_warn_days:
        counts["inactive_warned"] = _warn_inactive(session, rt, now)
    if settings.retention_inactive_erase_days:
        counts["inactive_erased"] = _erase_inactive(session, rt, now)
    changed = {kind: n for kind, n in counts.items() if n}
    if changed:
        audit.record(session, "gdpr.retention", removed=changed)
    session.commit()
    log.info("retention applied", extra={"event": "gdpr.retention", "counts": counts})
    return counts


def _idle_since(moment: datetime) -> ColumnElement[bool]:
    """Accounts not signed in to since ``moment`` (never: since they were made)."""
    return func.coalesce(User.last_sign_in_at, User.created_at) < moment


def _warn_inactive(session: Session, rt: Runtime, now: datetime) -> int:
    settings = rt.settings
    idle_since = now - timedelta(days=settings.retention_inactive_warn_days)
    erase_after = settings.retention_inactive_erase_days - settings.retention_inactive_warn_days
    users = session.execute(
        select(User)
        .where(_idle_since(idle_since), User.inactivity_warned_at.is_(None))
        .limit(BATCH)
    ).scalars()
    warned = 0
    for user in users:
        user.inactivity_warned_at = now
        rt.mailer.send_template(
            session,
            user.email,
            "inactive_warning",
            user_id=user.id,
            issuer=settings.issuer,
            days=erase_after if settings.retention_inactive_erase_days else None,
        )
        warned += 1
    return warned


def _erase_inactive(session: Session, rt: Runtime, now: datetime) -> int:
    settings = rt.settings
    idle_since = now - timedelta(days=settings.retention_inactive_erase_days)
    notice = settings.retention_inactive_erase_days - settings.retention_inactive_warn_days
    users = list(
        session.execute(
            select(User)
            .where(
                _idle_since(idle_since),
                User.inactivity_warned_at < now - timedelta(days=notice),
            )
            .limit(BATCH)
        ).scalars()
    )
    erasure, erased = Erasure(session, rt), 0
    for user in users:
        try:
            with session.begin_nested():
                erasure.erase(user, reason="inactive account (retention)")
            erased += 1
        except Conflict:  # the last active administrator stays, and the rest goes on
            log.warning(
                "inactive account kept: the last administrator",
                extra={"event": "gdpr.retention_kept", "user_id": str(user.id)},
            )
    return erased
