"""Second factors and sign-ins waiting for one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, new_uuid, utcnow


class TotpCredential(Base):
    """An authenticator app (RFC 6238). One per user: enrolling again replaces it."""

    __tablename__ = "totp_credentials"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    # The shared seed, sealed (AES-GCM, bound to this row's id): the database alone
    # cannot produce codes.
    sealed_secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # None while enrolling: the credential counts only once a code confirmed it.
    confirmed_at: Mapped[datetime | None]
    # The last time step whose code was accepted: no code of it or before is taken again.
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at: Mapped[datetime | None]
    # Wrong codes in a row, and until when codes are refused (separate from passwords).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None]


class RecoveryCode(Base):
    """One single-use recovery code; only a keyed hash of it is stored."""

    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class WebAuthnCredential(Base):
    """A passkey or security key (WebAuthn). A user may register several."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The authenticator's id for it (base64url), unique across all users.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE, public: not a secret
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(100))
    # A passkey (discoverable: it signs in without an email) and synced between devices.
    discoverable: Mapped[bool] = mapped_column(Boolean, default=False)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class PendingAuthentication(Base):
    """A sign-in with steps still to do. The browser holds a random token in a cookie;
    only its hash is stored. It is no login session: nothing counts as signed in until
    every required step is done."""

    __tablename__ = "pending_authentications"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # None while a passkey sign-in has not said who it is yet.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The WebAuthn challenge this sign-in asked an authenticator to sign (base64url),
    # single-use: it is cleared when an answer is checked.
    challenge: Mapped[str | None] = mapped_column(String(100))
    # RFC 8176 values of the steps done so far ("pwd"), in order.
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Where to go once signed in (a local path, checked when it was stored).
    next_url: Mapped[str] = mapped_column(String(2000), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
