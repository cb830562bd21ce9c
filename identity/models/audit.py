"""The audit trail: append-only records chained by SHA-256 so tampering shows.

The chain covers no personal data in the clear (identity.audit): users appear in it as
pseudonyms, and the personal details of a record (address, user agent, emails) as a salted
digest, so that erasing them (GDPR Art. 17) leaves the chain verifiable."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    # seq is the position in the chain; it has no gaps (REL-29).
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    # Outside the chain, erased with the user: who acted and who was acted upon...
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # ... and inside it, the same as pseudonyms (AuditPseudonym), which outlive the link.
    actor_ref: Mapped[str | None] = mapped_column(String(32))
    subject_ref: Mapped[str | None] = mapped_column(String(32))
    client_id: Mapped[str | None] = mapped_column(String(100))
    # Personal details, outside the chain: the request's address and user agent, and
    # ``personal`` = {"salt": ..., "data": {...}} (emails and names the event names).
    # ``personal_digest`` (in the chain) is SHA-256 over the salt and those details; with
    # the salt erased, the digest no longer tells anything about them.
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    personal: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    personal_digest: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row holding the chain's tip; updating it serialises audit writers."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditPseudonym(Base):
    """The pseudonym that stands for a user in the chain. Random, never derived from the
    user: when the account is erased this row goes with it, and nothing links the
    pseudonym to the person any more."""

    __tablename__ = "audit_pseudonyms"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True)
