"""GDPR: export and erasure jobs, the erasure ledger, the record of mail sent, and the
Security Event Tokens waiting for delivery to relying parties."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, new_uuid, utcnow

EXPORT = "export"
ERASURE = "erasure"


class PrivacyJob(Base):
    """A data export or an erasure, run in the background from this table, so that it
    survives restarts (leased like the mail outbox). An erasure waits until ``run_after``
    (the cooling-off period), an export runs at once and then holds its bundle, sealed,
    until the single-use download link is used or expires."""

    __tablename__ = "privacy_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(16))
    # The job goes with the account: an erasure deletes it in the same transaction.
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Asked by an operator (a command, the API), not by the person: signing in does not
    # call it off. ``requested_by`` is that operator's account, when they have one.
    by_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    reason: Mapped[str | None] = mapped_column(String(500))
    # An erasure disabled the account for its cooling-off: cancelling it enables it again.
    disabled_account: Mapped[bool] = mapped_column(Boolean, default=False)
    run_after: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An export's result: the ZIP, sealed, and the hash of its single-use download token.
    ready_at: Mapped[datetime | None]
    bundle: Mapped[str | None] = mapped_column(Text)
    download_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    download_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))


class ErasureRecord(Base):
    """The erasure ledger: which accounts were erased and when, with no personal data.
    ``subject_hash`` is an HMAC of the user id under the server's secret key, so that a
    database restored from an older backup can be brought back into line (``identity gdpr
    reapply-erasures``) without the ledger naming anyone."""

    __tablename__ = "erasure_ledger"

    receipt_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), unique=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    requested: Mapped[str] = mapped_column(String(16))  # "self" or "operator"


class SentMail(Base):
    """Which mail a user was sent, and when (subject only): part of their data export, kept
    for the retention period of sent-mail records."""

    __tablename__ = "sent_mails"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(300))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SecurityEvent(Base):
    """A Security Event Token (RFC 8417) waiting for delivery to a client's
    ``security_event_uri`` (RFC 8935 push), retried like back-channel logouts. The subject
    is the user's ``sub`` at that client, kept until delivered or given up."""

    __tablename__ = "security_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(64))  # no FK: the account is gone
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
