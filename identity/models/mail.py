"""The outbox: mail committed with the change that caused it, until it is delivered."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, new_uuid, utcnow


class OutboundMail(Base):
    """One message waiting for delivery; the row is deleted once the mail server took it.

    The whole message (recipient, subject, body) is sealed (``identity.sealing``): it holds
    verification and reset links, which act as passwords while they are valid.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    # Whom it concerns, so erasing a user erases their queued mail; none for a message to
    # an address that has no account.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # A sender's lease: another process takes the row only after it lapsed (a crash).
    claimed_until: Mapped[datetime | None]
