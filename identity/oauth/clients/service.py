"""Clients: registration, secrets, lookup with a short-lived per-process cache.

The token endpoint looks clients up on every request, so lookups are cached. Every change
to a client publishes the ``clients`` topic (identity.changes), which every worker of every
instance sees within a second; entries are also dropped after ``CACHE_TTL`` seconds, or
after ``changes.FALLBACK_TTL`` while a worker's change feed is not confirmed.
"""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity import audit, changes
from identity.exceptions import InvalidInput, NotFound
from identity.models.base import utcnow
from identity.models.oauth import Client, client_display_name
from identity.oauth.clients import metadata
from identity.oauth.clients.authentication import REQUEST_OBJECT_ALGORITHMS
from identity.oauth.clients.metadata import is_loopback_host
from identity.oauth.keys import ALGORITHMS
from identity.oauth.scopes import ADMIN_SCOPE, KNOWN_SCOPES
from identity.random_tokens import new_token, token_hash
from identity.rbac import service as rbac
from identity.rbac.permissions import WILDCARD

CACHE_TTL = 300.0
CACHE_MAX_ENTRIES = 10_000  # then emptied: unknown ids must not grow the cache forever
MAX_CLIENT_ID_LENGTH = 64
MAX_SECRET_LENGTH = 200  # longer than any secret this server makes: refused unhashed
MAX_PORT = 65535


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
    scopes: frozenset[str] = field(default_factory=frozenset)
    # Declared permissions the client wants in its tokens' "permissions" claim.
    token_permissions: tuple[str, ...] = ()

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
            scopes=frozenset(row.meta.get("scope", "").split()),
            token_permissions=tuple(p.name for p in row.permissions if p.in_token),
        )

    @property
    def display_name(self) -> str:
        return client_display_name(self.name, self.meta, self.client_id)

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
        if self.secret_hash is None or len(client_secret) > MAX_SECRET_LENGTH:
            return False
        if self.secret_expires_at is not None and self.secret_expires_at <= utcnow():
            return False  # BCP-34: expired secrets are refused
        return hmac.compare_digest(token_hash(client_secret), self.secret_hash)

    @property
    def accepted_auth_methods(self) -> list[str]:
        accepted = self.meta.get(metadata.ACCEPTED_AUTH_METHODS)
        return list(accepted) if isinstance(accepted, list) else [self.auth_method]

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.accepted_auth_methods

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
            and (port is None or 0 < port <= MAX_PORT)
            and parts.netloc == _netloc(parts.hostname or "", port)
        ):
            return True
    return False


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


class ClientCache:
    def __init__(self, feed: changes.ChangeFeed | None = None) -> None:
        self.feed = feed or changes.ChangeFeed()
        self._items: dict[str, tuple[float, int, ClientView | None]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, client_id: str | None) -> ClientView | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH:
            return None
        now = time.monotonic()
        generation = self.feed.generation(changes.CLIENTS)
        hit = self._items.get(client_id)
        if hit is not None and hit[1] == generation and now - hit[0] < self.feed.ttl(CACHE_TTL):
            return hit[2]
        row = session.execute(
            select(Client).where(Client.client_id == client_id)
        ).scalar_one_or_none()
        view = ClientView.of(row) if row is not None else None
        with self._lock:
            if len(self._items) > CACHE_MAX_ENTRIES:
                self._items.clear()
            self._items[client_id] = (now, generation, view)
        return view

    def invalidate(self, client_id: str | None = None) -> None:
        with self._lock:
            if client_id is None:
                self._items.clear()
            else:
                self._items.pop(client_id, None)


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Metadata an operator registers (the `identity clients` command, the admin API),
    checked and completed as dynamic registration does (RFC 7591), with every scope and
    signing algorithm the server knows."""
    return metadata.normalize_metadata(
        raw,
        known_scopes=KNOWN_SCOPES,
        signing_algs=ALGORITHMS,
        # OIDC Registration 2: RS256 unless the client asks for another.
        default_id_token_alg="RS256",  # noqa: S106 - an algorithm name  # nosec B106
        request_object_algs=REQUEST_OBJECT_ALGORITHMS,
    )


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
    roles: Iterable[str] = (),
    registered_via: str = "cli",
    actor_id: uuid.UUID | None = None,
    with_registration_token: bool = False,
    actor: rbac.Principal | None = None,
) -> CreatedClient:
    """Store a client whose metadata was already normalised; returns the secret once.
    ``roles`` go to its service account; ``actor`` (None: the operator) must hold what
    they grant (AUTHZ-05)."""
    secret = (
        new_token() if meta["token_endpoint_auth_method"] in metadata.SECRET_AUTH_METHODS else None
    )
    registration_token = new_token() if with_registration_token else None
    row = Client(
        client_id=new_token(24),
        client_secret_hash=token_hash(secret) if secret else None,
        name=metadata.clean_client_name(name, required=registered_via != "dynamic"),
        meta=meta,
        first_party=first_party,
        resource_server=resource_server,
        registered_via=registered_via,
        registration_token_hash=token_hash(registration_token) if registration_token else None,
    )
    session.add(row)
    session.flush()
    rbac.give_roles(session, rbac.Principal("client", row.id), roles, actor=actor)
    session.expire(row, ["roles"])
    changes.publish(session, changes.CLIENTS)
    changes.publish(session, changes.RBAC)  # the policy snapshot names clients by client_id
    audit.record(
        session, "client.create", actor_id=actor_id, client_id=row.client_id, via=registered_via
    )
    return CreatedClient(row, secret, registration_token)


def find(session: Session, client_id: str) -> Client:
    row = session.execute(select(Client).where(Client.client_id == client_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no client {client_id}")
    return row


def rotate_secret(
    session: Session,
    row: Client,
    actor_id: uuid.UUID | None = None,
    *,
    actor: rbac.Principal | None = None,
) -> str:
    """A new secret, returned once. Whoever holds it acts as the service account, so only
    someone holding all the account holds may rotate it (AUTHZ-02)."""
    rbac.require_outranks_principal(session, actor, rbac.Principal("client", row.id))
    if row.meta.get("token_endpoint_auth_method") not in metadata.SECRET_AUTH_METHODS:
        raise InvalidInput("this client does not authenticate with a secret")
    secret = new_token()
    row.client_secret_hash = token_hash(secret)
    row.client_secret_expires_at = None
    changes.publish(session, changes.CLIENTS)
    audit.record(session, "client.secret_rotated", actor_id=actor_id, client_id=row.client_id)
    return secret


def delete_client(
    session: Session,
    row: Client,
    actor_id: uuid.UUID | None = None,
    *,
    actor: rbac.Principal | None = None,
) -> None:
    """Delete a client; its codes, refresh tokens and consents go with it (ON DELETE
    CASCADE) and its outstanding access tokens stop validating (no client, no token)."""
    rbac.require_outranks_principal(session, actor, rbac.Principal("client", row.id))
    audit.record(session, "client.delete", actor_id=actor_id, client_id=row.client_id)
    session.delete(row)
    changes.publish(session, changes.CLIENTS)
    changes.publish(session, changes.RBAC)  # its service account's grants go with it


def update_client(session: Session, row: Client, *, name: str, meta: dict[str, Any]) -> None:
    """Change a client's name and (already normalised) metadata."""
    row.name = name
    row.meta = meta
    changes.publish(session, changes.CLIENTS)


def change_client(
    session: Session,
    row: Client,
    *,
    name: str,
    meta: dict[str, Any],
    first_party: bool,
    actor_id: uuid.UUID | None = None,
) -> list[str]:
    """An operator's change to a registered client: its name, its (already normalised)
    metadata and the first-party flag. Published to every process by ``update_client`` and
    audited with the names of what changed, which it returns (empty: nothing changed)."""
    name = metadata.clean_client_name(name, required=row.registered_via != "dynamic")
    changed = [
        key for key in sorted(set(meta) | set(row.meta)) if meta.get(key) != row.meta.get(key)
    ]
    if name != row.name:
        changed.insert(0, "client_name")
    if first_party != row.first_party:
        changed.append("first_party")
    if not changed:
        return []
    row.first_party = first_party
    update_client(session, row, name=name, meta=meta)
    audit.record(
        session, "client.update", actor_id=actor_id, client_id=row.client_id, changed=changed
    )
    return changed


def register(
    session: Session,
    raw: dict[str, Any],
    *,
    name: str,
    first_party: bool = False,
    resource_server: bool = False,
    roles: Iterable[str] = (),
    registered_via: str = "cli",
    actor: rbac.Principal | None = None,
) -> CreatedClient:
    """An operator registers a client (``registered_via`` "cli" or "api"): ``raw`` RFC 7591
    metadata, normalised here (InvalidClientMetadata when it breaks a rule); the secret is
    returned once."""
    meta = normalize(raw)
    require_trust_rights(session, actor, meta, first_party)
    return create_client(
        session,
        name=name,
        meta=meta,
        first_party=first_party,
        resource_server=resource_server,
        roles=roles,
        registered_via=registered_via,
        actor=actor,
        actor_id=rbac.actor_user(actor),
    )


def change_registration(
    session: Session,
    row: Client,
    *,
    name: str | None = None,
    redirect_uris: list[str] | None = None,
    add_redirect_uris: Iterable[str] = (),
    remove_redirect_uris: Iterable[str] = (),
    post_logout_redirect_uris: list[str] | None = None,
    scope: str | None = None,
    first_party: bool | None = None,
    actor: rbac.Principal | None = None,
) -> list[str]:
    """An operator's change to a client: None (or nothing to add or remove) keeps a value.
    ``redirect_uris`` replaces every redirect URI, then ``remove_redirect_uris`` (each must
    be registered) and ``add_redirect_uris`` apply. The result is normalised as a new
    registration is; how the client authenticates does not change. Returns what changed."""
    raw = {k: v for k, v in row.meta.items() if k not in metadata.INTERNAL_METADATA}
    if set(row.meta.get(metadata.ACCEPTED_AUTH_METHODS) or ()) == set(metadata.SECRET_AUTH_METHODS):
        # A secret client registered without a method accepts both ways; it keeps doing so
        # (normalising its stored method again would pin it to one).
        raw.pop("token_endpoint_auth_method", None)
    uris = list(redirect_uris) if redirect_uris is not None else list(raw.get("redirect_uris", []))
    removed = list(remove_redirect_uris)
    missing = [uri for uri in removed if uri not in uris]
    if missing:
        raise metadata.InvalidRedirectUri(f"not a redirect URI of {row.client_id}: {missing[0]}")
    uris = [uri for uri in uris if uri not in removed]
    added = [uri for uri in dict.fromkeys(add_redirect_uris) if uri not in uris]
    raw["redirect_uris"] = uris + added
    if post_logout_redirect_uris is not None:
        raw["post_logout_redirect_uris"] = list(post_logout_redirect_uris)
    if scope is not None:
        raw["scope"] = scope
    # Whoever changes where a client's codes go (or its scopes) can act as it.
    rbac.require_outranks_principal(session, actor, rbac.Principal("client", row.id))
    meta = normalize(raw)
    trusted = row.first_party if first_party is None else first_party
    require_trust_rights(session, actor, meta, trusted)
    return change_client(
        session,
        row,
        name=row.name if name is None else name,
        meta=meta,
        first_party=trusted,
        actor_id=rbac.actor_user(actor),
    )


def require_trust_rights(
    session: Session, actor: rbac.Principal | None, meta: dict[str, Any], first_party: bool
) -> None:
    """A first-party client skips the consent page, and one registered for identity:admin
    can carry an administrator's power to wherever its redirect URIs point: only a caller
    holding everything (*) may make either (AUTHZ-05)."""
    if first_party or ADMIN_SCOPE in str(meta.get("scope", "")).split():
        rbac.require_holds(session, actor, [WILDCARD])


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
