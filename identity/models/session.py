"""Server-side login sessions and the per-account sign-in throttle."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from identity.models.base import Base, utcnow
from identity.models.user import User


class LoginSession(Base):
    """One signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "login_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Public session id: the OIDC ``sid`` claim. Not the cookie, which must stay secret.
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    auth_time: Mapped[datetime]
    # Authentication methods (RFC 8176 values such as "pwd", "otp") and the ACR reached.
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(400))

    user: Mapped[User] = relationship(lazy="joined")


class LoginThrottle(Base):
    """Failed sign-ins per email (known or not, so throttling reveals nothing)."""

    __tablename__ = "login_throttles"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime | None]
