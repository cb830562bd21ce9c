"""Clients: registration, secrets, lookup with a short-lived per-process cache.

The token endpoint looks clients up on every request, so lookups are cached for
``CACHE_TTL`` seconds. Changes made by this process invalidate its cache at once; other
processes see them within ``CACHE_TTL`` (documented in docs/oidc.md).
"""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit
from identity.errors import InvalidInput, NotFound
from identity.models.base import utcnow
from identity.models.oauth import Client
from identity.models.user import Role
from identity.oauth import metadata
from identity.oauth.metadata import is_loopback_host
from identity.tokens import new_token, token_hash

CACHE_TTL = 10.0


@dataclass(frozen=True)
class ClientView(ClientMixin):  # type: ignore[misc]
    """An immutable snapshot of a client, safe to share between requests and threads."""

    pk: uuid.UUID
    client_id: str
    name: str
    meta: dict[str, Any]
    secret_hash: str | None = None
    secret_expires_at: datetime | None = None
    first_party: bool = False
    resource_server: bool = False
    registered_via: str = "cli"
    role_names: tuple[str, ...] = ()
    scopes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, row: Client) -> ClientView:
        return cls(
            pk=row.id,
            client_id=row.client_id,
            name=row.name,
            meta=dict(row.meta),
            secret_hash=row.client_secret_hash,
            secret_expires_at=row.client_secret_expires_at,
            first_party=row.first_party,
            resource_server=row.resource_server,
            registered_via=row.registered_via,
            role_names=tuple(sorted(r.name for r in row.roles)),
            scopes=frozenset(row.meta.get("scope", "").split()),
        )

    # Authlib ClientMixin ------------------------------------------------------------

    @property
    def client_metadata(self) -> dict[str, Any]:
        return self.meta

    @property
    def auth_method(self) -> str:
        return str(self.meta.get("token_endpoint_auth_method", "client_secret_basic"))

    @property
    def is_public(self) -> bool:
        return self.auth_method == "none"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every request: no silent default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Requested scopes the client may ask for; unknown ones are dropped (BCP-32)."""
        if not scope:
            return " ".join(s for s in self.meta.get("scope", "").split())
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.meta.get("redirect_uris", []), redirect_uri)

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        return uri in self.meta.get("post_logout_redirect_uris", [])

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None or len(client_secret) > 200:
            return False
        if self.secret_expires_at is not None and self.secret_expires_at <= utcnow():
            return False  # BCP-34: expired secrets are refused
        return hmac.compare_digest(token_hash(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.meta.get("response_types", [])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.meta.get("grant_types", [])


def redirect_uri_matches(registered: list[str], candidate: str) -> bool:
    """Exact string comparison (BCP-01), except that a loopback URI may use any port
    (RFC 8252 section 7.3); scheme, host, path and query must still match exactly."""
    if candidate in registered:
        return True
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or not is_loopback_host(parts.hostname) or "@" in parts.netloc:
        return False
    for uri in registered:
        reg = urlsplit(uri)
        if (
            reg.scheme == "http"
            and is_loopback_host(reg.hostname)
            and reg.hostname == parts.hostname
            and reg.path == parts.path
            and reg.query == parts.query
            and not parts.fragment
            and (port is None or 0 < port < 65536)
            and parts.netloc == _netloc(parts.hostname or "", port)
        ):
            return True
    return False


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


class ClientCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[float, ClientView | None]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, client_id: str) -> ClientView | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            return None
        now = time.monotonic()
        hit = self._items.get(client_id)
        if hit is not None and now - hit[0] < CACHE_TTL:
            return hit[1]
        row = session.execute(
            select(Client).where(Client.client_id == client_id)
        ).scalar_one_or_none()
        view = ClientView.of(row) if row is not None else None
        with self._lock:
            if len(self._items) > 10_000:  # unknown ids must not grow the cache forever
                self._items.clear()
            self._items[client_id] = (now, view)
        return view

    def invalidate(self, client_id: str | None = None) -> None:
        with self._lock:
            if client_id is None:
                self._items.clear()
            else:
                self._items.pop(client_id, None)


@dataclass(frozen=True)
class CreatedClient:
    client: Client
    client_secret: str | None
    registration_access_token: str | None = None


def create_client(
    session: Session,
    *,
    name: str,
    meta: dict[str, Any],
    first_party: bool = False,
    resource_server: bool = False,
    roles: tuple[str, ...] = (),
    registered_via: str = "cli",
    actor_id: uuid.UUID | None = None,
    with_registration_token: bool = False,
) -> CreatedClient:
    """Store a client whose metadata was already normalised; returns the secret once."""
    secret = (
        new_token() if meta["token_endpoint_auth_method"] in metadata.SECRET_AUTH_METHODS else None
    )
    registration_token = new_token() if with_registration_token else None
    row = Client(
        client_id=new_token(24),
        client_secret_hash=token_hash(secret) if secret else None,
        name=metadata.clean_client_name(name),
        meta=meta,
        first_party=first_party,
        resource_server=resource_server,
        registered_via=registered_via,
        registration_token_hash=token_hash(registration_token) if registration_token else None,
    )
    for role_name in roles:
        role = session.execute(select(Role).where(Role.name == role_name)).scalar_one_or_none()
        if role is None:
            raise InvalidInput(f"unknown role: {role_name}")
        row.roles.append(role)
    session.add(row)
    session.flush()
    audit.record(
        session, "client.create", actor_id=actor_id, client_id=row.client_id, via=registered_via
    )
    return CreatedClient(row, secret, registration_token)


def find(session: Session, client_id: str) -> Client:
    row = session.execute(select(Client).where(Client.client_id == client_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no client {client_id}")
    return row


def rotate_secret(session: Session, row: Client, actor_id: uuid.UUID | None = None) -> str:
    if row.meta.get("token_endpoint_auth_method") not in metadata.SECRET_AUTH_METHODS:
        raise InvalidInput("this client does not authenticate with a secret")
    secret = new_token()
    row.client_secret_hash = token_hash(secret)
    row.client_secret_expires_at = None
    audit.record(session, "client.secret_rotated", actor_id=actor_id, client_id=row.client_id)
    return secret


def delete_client(session: Session, row: Client, actor_id: uuid.UUID | None = None) -> None:
    """Delete a client; its codes, refresh tokens and consents go with it (ON DELETE
    CASCADE) and its outstanding access tokens stop validating (no client, no token)."""
    audit.record(session, "client.delete", actor_id=actor_id, client_id=row.client_id)
    session.delete(row)


def describe(row: Client) -> dict[str, Any]:
    """Public view of a client (never the secret or its hash)."""
    return {
        "client_id": row.client_id,
        "client_name": row.name,
        "first_party": row.first_party,
        "resource_server": row.resource_server,
        "registered_via": row.registered_via,
        "roles": sorted(r.name for r in row.roles),
        "created_at": row.created_at.isoformat(),
        **row.meta,
    }
