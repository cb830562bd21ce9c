"""OAuth 2.0 / OpenID Connect state: clients, codes, refresh tokens, consents, revocations.

Every secret is stored as its SHA-256 hash; the secrets themselves are random 256-bit values,
so a fast hash is the right one (a slow hash would cost two orders of magnitude in throughput
and buy nothing, see ../docs/oidc.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from identity.models.base import Base, new_uuid, utcnow
from identity.models.rbac import ClientPermission, Role, RoleAssignment


class Client(Base):
    """A registered relying party. Protocol metadata (RFC 7591 names) lives in ``meta``."""

    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_secret_expires_at: Mapped[datetime | None]
    name: Mapped[str] = mapped_column(String(200))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    resource_server: Mapped[bool] = mapped_column(Boolean, default=False)
    # "cli", "api" or "dynamic" (RFC 7591); dynamic clients always see a consent page.
    registered_via: Mapped[str] = mapped_column(String(16), default="cli")
    registration_token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # The roles of the client's service account given globally (identity.rbac has all).
    roles: Mapped[list[Role]] = relationship(
        secondary=RoleAssignment.__table__,
        primaryjoin=lambda: Client.id == RoleAssignment.client_pk,
        secondaryjoin=lambda: (
            (Role.id == RoleAssignment.role_id) & RoleAssignment.scope_client_pk.is_(None)
        ),
        viewonly=True,
        order_by=lambda: Role.name,
    )

    # The permissions the application declares (identity.rbac).
    permissions: Mapped[list[ClientPermission]] = relationship(
        lazy="selectin", viewonly=True, order_by=lambda: ClientPermission.name
    )

    @property
    def display_name(self) -> str:
        return client_display_name(self.name, self.meta, self.client_id)


def client_display_name(name: str, meta: dict[str, Any], client_id: str) -> str:
    """What users are shown for a client: its name, or for a client registered without one
    (RFC 7591 makes client_name optional) the host of its redirect URI, or its id."""
    if name:
        return name
    for uri in meta.get("redirect_uris", []):
        host = urlsplit(uri).hostname
        if host:
            return host
    return client_id


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Tokens issued from this code form one family; replaying the code revokes it.
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=new_uuid)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auth_time: Mapped[datetime]
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    sid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RefreshToken(Base):
    """One refresh token of a rotating family (BCP-24)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    auth_time: Mapped[datetime]
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    # The login session the grant came from; None for offline_access grants.
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    # The OIDC claims request of the original authorization, kept for refreshed tokens.
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    family_expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class TokenRevocation(Base):
    """Revoked JWT access tokens, by ``jti``, grant family or user, until they expire.

    Keys: ``jti:<jti>``, ``gid:<family id>``, ``sub:<user id>`` (tokens of that user issued
    before ``revoked_at``). Checking one token is one indexed look-up of up to three keys.
    """

    __tablename__ = "token_revocations"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    # Indexed for the catch-up read of each worker's revocation state.
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Consent(Base):
    """Scopes a user granted a client; requests within them skip the consent page."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_pk"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The last authorization the user gave the app (its refresh tokens say when it last
    # refreshed): shown on the connected-apps page.
    last_authorized_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(lazy="joined")


class PendingAuthorization(Base):
    """An authorization request waiting for sign-in or consent, or pushed by a client
    (RFC 9126). Its id travels in URLs; only the hash is stored."""

    __tablename__ = "pending_authorizations"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    pushed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    client: Mapped[Client] = relationship(lazy="joined")


class DeviceAuthorization(Base):
    """RFC 8628 device authorization: a device polls with device_code while the user
    approves the user_code in a browser."""

    __tablename__ = "device_authorizations"

    device_code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # User codes are short; stored as an HMAC so a database read does not reveal them.
    user_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE")
    )
    auth_time: Mapped[datetime | None]
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_polled_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(lazy="joined")


class UsedJti(Base):
    """Replay cache for client assertions (RFC 7523 ``jti``), shared by every worker."""

    __tablename__ = "used_jtis"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SigningKey(Base):
    """A JWS signing key. The private JWK is encrypted (AES-256-GCM, key derived from the
    secret key); the public JWK is published in the JWKS until every token it signed has
    expired."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Signs from this moment (after being published for a while).
    active_from: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    # Removed from the JWKS after this moment (retired + longest token lifetime).
    unpublish_at: Mapped[datetime | None]


class BackchannelLogout(Base):
    """A logout token to deliver to a client's ``backchannel_logout_uri`` (OpenID Connect
    Back-Channel Logout 1.0), kept until delivered or given up, like queued mail: it
    survives restarts and is retried."""

    __tablename__ = "backchannel_logouts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the sub; no FK: the user may be gone
    # The session that ended; None: every session of the user at that client.
    sid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
