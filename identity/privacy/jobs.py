"""Data exports and scheduled erasures, run in the background from ``privacy_jobs``.

A request adds a row in the caller's transaction; each serving worker sweeps the table
(``run_due``), leasing one row at a time so that two workers never run the same job and a
job whose worker died runs again when its lease lapses. An export, once built, waits
sealed in its row for its single-use download link (mailed to the person), until used or
expired; an erasure runs when its cooling-off period ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from identity import audit
from identity.database import rowcount
from identity.exceptions import InvalidInput, NotFound
from identity.models.base import utcnow
from identity.models.privacy import ERASURE, EXPORT, PrivacyJob
from identity.models.user import User
from identity.privacy import bundle, export
from identity.privacy.erasure import Erasure
from identity.random_tokens import new_token, token_hash
from identity.rbac import service as rbac
from identity.sealing import Sealer

if TYPE_CHECKING:
    from identity.runtime import Runtime

log = logging.getLogger("identity.privacy")
LEASE = timedelta(minutes=5)
SWEEP_INTERVAL = 5.0  # a requested export is mailed within seconds
MAX_ATTEMPTS = 5
PARKED = timedelta(days=3650)
MAX_TOKEN_LENGTH = 100  # the download token is 43 characters; longer is not worth a query


class ExportGone(NotFound):
    """The download link is unknown, used, expired, or not this person's."""

    def __init__(self) -> None:
        super().__init__("This download link is used, expired or not yours.")


def _sealer(rt: Runtime) -> Sealer:
    return Sealer(rt.secret_key, info=b"identity data exports v1", aad=b"export")


def request_export(
    session: Session, user: User, *, requested_by: uuid.UUID | None = None
) -> PrivacyJob:
    """Queue a data export of ``user``; one being built already is returned instead."""
    waiting = (
        session.execute(
            select(PrivacyJob).where(
                PrivacyJob.user_id == user.id,
                PrivacyJob.kind == EXPORT,
                PrivacyJob.ready_at.is_(None),
            )
        )
        .scalars()
        .first()
    )
    if waiting is not None:
        return waiting
    job = PrivacyJob(kind=EXPORT, user_id=user.id, requested_by=requested_by, attempts=0)
    session.add(job)
    audit.record(
        session, "gdpr.export_requested", actor_id=requested_by or user.id, subject_id=user.id
    )
    session.flush()
    return job


def build_bundle(
    session: Session,
    rt: Runtime,
    user: User,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """The signed ZIP of everything exportable about ``user``, made now (``progress`` is
    called with each table gathered)."""
    alg = rt.settings.signing_alg
    ring = rt.keys.ring(session)
    if alg not in ring.signing:
        raise InvalidInput(f"no active {alg} signing key; run `identity init`")
    kid, key = ring.signing[alg]
    data = export.collect(session, user, rt.settings.issuer, progress)
    return bundle.build(data, export.schema(), alg, kid, key)


def export_for_operator(
    session: Session,
    rt: Runtime,
    user: User,
    *,
    actor: rbac.Principal | None = None,
    client_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """The signed ZIP of ``user`` for an operator's subject access request (the admin API,
    the console, `identity gdpr export`), audited. As sensitive as changing the user:
    refused when ``actor`` does not hold all the user holds (None: the operator at the
    `identity` command)."""
    rbac.require_outranks(session, actor, user.id)
    data = build_bundle(session, rt, user, progress)
    audit.record(
        session,
        "gdpr.export_by_operator",
        actor_id=rbac.actor_user(actor),
        subject_id=user.id,
        client_id=client_id,
    )
    return data


def _lease(session: Session, job_id: uuid.UUID, now: datetime) -> bool:
    free = or_(PrivacyJob.claimed_until.is_(None), PrivacyJob.claimed_until < now)
    statement = (
        update(PrivacyJob)
        .where(PrivacyJob.id == job_id, free, PrivacyJob.ready_at.is_(None))
        .values(claimed_until=now + LEASE, attempts=PrivacyJob.attempts + 1)
    )
    return rowcount(session.execute(statement)) == 1


def due(session: Session, now: datetime | None = None, limit: int = 10) -> list[uuid.UUID]:
    moment = now or utcnow()
    ids = list(
        session.execute(
            select(PrivacyJob.id)
            .where(
                PrivacyJob.ready_at.is_(None),
                PrivacyJob.run_after <= moment,
                or_(PrivacyJob.claimed_until.is_(None), PrivacyJob.claimed_until < moment),
            )
            .order_by(PrivacyJob.run_after)
            .limit(limit)
        ).scalars()
    )
    session.rollback()
    return ids


def run_due(session: Session, rt: Runtime, now: datetime | None = None) -> int:
    """Run what is due; returns how many jobs were taken."""
    return sum(run_one(session, rt, job_id, now) for job_id in due(session, now))


def run_one(session: Session, rt: Runtime, job_id: uuid.UUID, now: datetime | None = None) -> bool:
    """Lease one job and run it in one transaction; a failure is retried after the lease,
    up to MAX_ATTEMPTS times, and logged (with ids only)."""
    moment = now or utcnow()
    if not _lease(session, job_id, moment):
        session.rollback()
        return False
    session.commit()  # the lease holds while the job runs
    job = session.get(PrivacyJob, job_id)
    if job is None:
        return True
    kind, attempts = job.kind, job.attempts
    try:
        if kind == EXPORT:
            _finish_export(session, rt, job, moment)
        elif kind == ERASURE:
            by_operator, reason, user_id = job.by_operator, job.reason, job.user_id
            # Taken in this transaction: a cancel that committed since the lease wins.
            taken = session.execute(delete(PrivacyJob).where(PrivacyJob.id == job_id))
            user = session.get(User, user_id) if rowcount(taken) == 1 else None
            if user is not None:
                Erasure(session, rt).erase(user, by_operator=by_operator, reason=reason)
        session.commit()
        log.info("privacy job done", extra={"event": f"gdpr.{kind}_done", "job": str(job_id)})
    except Exception as error:  # noqa: BLE001 - any failure: retried, then given up, logged
        session.rollback()
        message = type(error).__name__[:200]  # the type only: messages may hold addresses
        extra = {"event": f"gdpr.{kind}_failed", "job": str(job_id), "error": message}
        log.error("privacy job failed", extra=extra)
        statement = update(PrivacyJob).where(PrivacyJob.id == job_id)
        if attempts < MAX_ATTEMPTS:
            session.execute(statement.values(last_error=message))
        elif kind == EXPORT:  # given up: the person may ask again
            session.execute(delete(PrivacyJob).where(PrivacyJob.id == job_id))
        else:  # an erasure is parked for an operator (identity gdpr erase --now)
            session.execute(statement.values(last_error=message, run_after=moment + PARKED))
        session.commit()
    return True


def _finish_export(session: Session, rt: Runtime, job: PrivacyJob, now: datetime) -> None:
    user = session.get(User, job.user_id)
    if user is None:
        return
    data = build_bundle(session, rt, user)
    token = new_token()
    hours = rt.settings.gdpr_export_link_hours
    job.bundle = _sealer(rt).seal(data, str(job.id).encode())
    job.download_hash = token_hash(token)
    job.download_expires_at = now + timedelta(hours=hours)
    job.ready_at = now
    job.claimed_until = None
    rt.mailer.send_template(
        session,
        user.email,
        "export_ready",
        user_id=user.id,
        issuer=rt.settings.issuer,
        hours=hours,
        link=f"{rt.settings.issuer}/account/privacy/download/{token}",
    )
    audit.record(session, "gdpr.export_ready", subject_id=user.id, size=len(data))


def ready_export(session: Session, token: str, user: User) -> PrivacyJob:
    """The export a download link names, if it is this person's and still valid."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise ExportGone()
    job = session.execute(
        select(PrivacyJob).where(PrivacyJob.download_hash == token_hash(token))
    ).scalar_one_or_none()
    expires = job.download_expires_at if job is not None else None
    if job is None or job.user_id != user.id or expires is None or expires <= utcnow():
        raise ExportGone()
    return job


def take_export(session: Session, rt: Runtime, token: str, user: User) -> bytes:
    """The bundle, once: the row goes with this download (single use)."""
    job = ready_export(session, token, user)
    if job.bundle is None:
        raise ExportGone()
    data = _sealer(rt).open(job.bundle, str(job.id).encode())
    claimed = rowcount(
        session.execute(
            delete(PrivacyJob).where(
                PrivacyJob.id == job.id, PrivacyJob.download_hash == job.download_hash
            )
        )
    )
    if claimed != 1:  # another request took it first
        raise ExportGone()
    audit.record(session, "gdpr.export_downloaded", actor_id=user.id, subject_id=user.id)
    return data


def purge_expired_exports(session: Session, now: datetime | None = None) -> int:
    moment = now or utcnow()
    return rowcount(
        session.execute(
            delete(PrivacyJob).where(
                PrivacyJob.kind == EXPORT, PrivacyJob.download_expires_at < moment
            )
        )
    )
