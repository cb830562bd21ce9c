"""What the dashboard shows, read from the store: counts, sign-ins over time, the failures
that stand out, queues and the audit chain's last verification. Plain values out; the
page (identity.admin.dashboard) only draws them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from identity import audit
from identity.models.audit import AuditEvent
from identity.models.base import utcnow
from identity.models.oauth import Client
from identity.models.session import LoginSession
from identity.models.user import User
from identity.queues import QueueDepth, depths
from identity.runtime import runtime
from identity.sessions import policy as session_policy
from identity.sessions.service import SessionPolicy, live

SIGN_IN = "user.sign_in"
# Events an operator wants to see first: factors, keys, secrets, roles, erasures, refusals.
SECURITY_PREFIXES = ("mfa.", "key.", "role.", "gdpr.", "client.secret", "user.disabled")


@dataclass(frozen=True)
class Bucket:
    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Overview:
    users: int
    disabled_users: int
    active_sessions: int
    clients: int
    last_day: list[Bucket]  # 24 hours, oldest first
    last_week: list[Bucket]  # 7 days, oldest first
    failure_reasons: list[tuple[str, int]]  # the last 7 days, most frequent first
    security_events: list[AuditEvent]
    queues: list[QueueDepth]  # identity.queues, which the metrics read too
    last_verification: AuditEvent | None


def overview(
    session: Session, now: datetime | None = None, *, policy: SessionPolicy | None = None
) -> Overview:
    """``policy``: the session timeouts (the settings' by default), so a session counts as
    active exactly when /admin/sessions lists it."""
    now = now or utcnow()
    policy = policy or session_policy(runtime().settings)
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    scalar = session.scalar
    return Overview(
        users=scalar(select(func.count()).select_from(User)) or 0,
        disabled_users=scalar(
            select(func.count()).select_from(User).where(User.disabled_at.is_not(None))
        )
        or 0,
        active_sessions=scalar(
            select(func.count()).select_from(LoginSession).where(live(policy, now))
        )
        or 0,
        clients=scalar(select(func.count()).select_from(Client)) or 0,
        last_day=sign_ins(session, hour - timedelta(hours=23), timedelta(hours=1), 24),
        last_week=sign_ins(session, day - timedelta(days=6), timedelta(days=1), 7),
        failure_reasons=failure_reasons(session, now - timedelta(days=7)),
        security_events=security_events(session),
        queues=depths(session),
        last_verification=audit.last_verification(session),
    )


def sign_ins(session: Session, start: datetime, step: timedelta, count: int) -> list[Bucket]:
    """Successful and failed password sign-ins per ``step`` from ``start``. Counted per
    bucket in SQL: one query per bucket pair would be 2 x count round trips."""
    end = start + step * count
    rows = session.execute(
        select(AuditEvent.occurred_at, AuditEvent.outcome).where(
            AuditEvent.event == SIGN_IN,
            AuditEvent.occurred_at >= start,
            AuditEvent.occurred_at < end,
        )
    )
    ok = Counter[int]()
    failed = Counter[int]()
    for occurred_at, outcome in rows:
        index = int((_naive(occurred_at) - _naive(start)) / step)
        (ok if outcome == "success" else failed)[index] += 1
    return [Bucket(start + step * i, ok[i], failed[i]) for i in range(count)]


def _naive(moment: datetime) -> datetime:
    # SQLite gives back naive UTC, PostgreSQL aware UTC: compare them as naive UTC.
    return moment.replace(tzinfo=None)


def failure_reasons(session: Session, since: datetime, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent failures since ``since``: "event: reason" with their counts (from
    the newest 5,000 failures, enough to rank the top ones)."""
    rows = session.execute(
        select(AuditEvent.event, AuditEvent.data)
        .where(AuditEvent.outcome == "failure", AuditEvent.occurred_at >= since)
        .order_by(AuditEvent.seq.desc())
        .limit(5000)
    )
    counts = Counter(
        f"{event}: {data.get('reason')}" if data and data.get("reason") else event
        for event, data in rows
    )
    return counts.most_common(limit)


def security_events(session: Session, limit: int = 8) -> list[AuditEvent]:
    condition = AuditEvent.event.startswith(SECURITY_PREFIXES[0])
    for prefix in SECURITY_PREFIXES[1:]:
        condition = condition | AuditEvent.event.startswith(prefix)
    statement = select(AuditEvent).where(condition).order_by(AuditEvent.seq.desc()).limit(limit)
    return list(session.execute(statement).scalars())
