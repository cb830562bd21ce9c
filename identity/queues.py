"""Work waiting for a serving worker's background threads: mail to send, privacy jobs
(exports, erasures) and security events to deliver. The dashboard (identity.admin.overview)
and the metrics (identity.metrics) read them from here; a large or old queue means the
threads are stuck (or mail cannot be delivered)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from identity.models.mail import OutboundMail
from identity.models.privacy import PrivacyJob, SecurityEvent


@dataclass(frozen=True)
class QueueDepth:
    key: str  # the metrics label: "mail", "privacy_jobs", "security_events"
    name: str  # for people
    pending: int
    oldest: datetime | None  # when the oldest waiting item was queued


def depths(session: Session) -> list[QueueDepth]:
    """Each queue's length and its oldest item, one query per queue."""
    mail = session.execute(select(func.count(), func.min(OutboundMail.created_at))).one()
    jobs = session.execute(
        select(func.count(), func.min(PrivacyJob.created_at)).where(PrivacyJob.ready_at.is_(None))
    ).one()
    notices = session.execute(select(func.count(), func.min(SecurityEvent.created_at))).one()
    return [
        QueueDepth("mail", "Mail to send", mail[0] or 0, mail[1]),
        QueueDepth("privacy_jobs", "Privacy jobs (exports, erasures)", jobs[0] or 0, jobs[1]),
        QueueDepth("security_events", "Security events to deliver", notices[0] or 0, notices[1]),
    ]
