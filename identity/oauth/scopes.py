"""Scopes, what they mean in plain words, and the claims each one releases (OIDC Core 5.4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "openid": "Sign you in with your identity account",
    "profile": "See your name",
    "email": "See your email address",
    "offline_access": "Stay connected when you are not using the app",
    "roles": "See the roles you have",
    "permissions": "See what you may do in this app",
    "identity:admin": "Administer identity with your permissions",
}
KNOWN_SCOPES = set(SCOPE_DESCRIPTIONS)
# The admin API's scope (identity.api.auth): a token gets it only when its subject holds
# one of identity's own permissions, and dynamic registration cannot ask for it.
ADMIN_SCOPE = "identity:admin"
PRIVILEGED_SCOPES = frozenset({ADMIN_SCOPE})

# The claims each scope releases: only claims the server holds (no address, phone, picture,
# birthdate...), so that discovery's claims_supported and scopes_supported are exact.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
    "roles": ("roles",),
    "permissions": ("permissions",),
}
USER_CLAIMS = frozenset(claim for claims in SCOPE_CLAIMS.values() for claim in claims)
# What ID tokens carry besides user claims (OIDC Core 2 and 3.1.3.6).
PROTOCOL_CLAIMS = ("sub", "iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "acr", "amr")
CLAIMS_SUPPORTED = sorted({*PROTOCOL_CLAIMS, "at_hash", "sid"} | USER_CLAIMS)


def claims_of(scopes: Iterable[str]) -> set[str]:
    """The user claims these scopes carry."""
    return {claim for scope in scopes for claim in SCOPE_CLAIMS.get(scope, ())}


def permitted_claims_request(
    request: dict[str, Any], client_scopes: Iterable[str]
) -> dict[str, Any]:
    """A ``claims`` request parameter (OIDC Core 5.5) cut down to what the client may have:
    a user claim is released only to a client that may have the scope carrying it."""
    allowed = claims_of(client_scopes)
    return {
        member: {
            name: spec
            for name, spec in (wanted or {}).items()
            if name not in USER_CLAIMS or name in allowed
        }
        for member, wanted in request.items()
        if member in ("userinfo", "id_token")
    }


class Claimant(Protocol):
    """What claims are made of: a ``User``, or its cached ``identity.oauth.profiles.Profile``."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def is_verified(self) -> bool: ...
    @property
    def updated_at(self) -> datetime: ...


def user_claims(user: Claimant, access: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Every claim the server knows about a user; scopes choose among them. ``access`` is
    the user's ``roles`` and ``permissions`` for the client asking (identity.rbac)."""
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "email": user.email,
        "email_verified": user.is_verified,
        "updated_at": int(user.updated_at.timestamp()),
        **(access or {}),
    }
    if user.name:
        claims["name"] = user.name
        claims["preferred_username"] = user.name
    return claims


def released_claims(
    user: Claimant,
    scopes: list[str],
    requested: dict[str, Any] | None = None,
    client_scopes: Iterable[str] = (),
    access: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Claims for the granted scopes, plus individually requested ones (OIDC Core 5.5).

    ``sub`` is always present. ``requested`` names are released only when
    ``client_scopes`` (the scopes the client may have) carry them.
    """
    known = user_claims(user, access)
    names: set[str] = {"sub", *claims_of(scopes)}
    if requested:
        allowed = claims_of(client_scopes)
        names.update(name for name in requested if name in known and name in allowed)
    return {name: known[name] for name in sorted(names) if name in known}


_SCOPE_ORDER = {scope: n for n, scope in enumerate(SCOPE_DESCRIPTIONS)}


def describe(scopes: Iterable[str]) -> list[tuple[str, str]]:
    """Each scope once, with its plain words, in one fixed order (that of
    SCOPE_DESCRIPTIONS, unknown ones last by name): the consent, device and connected-apps
    pages list the same scopes the same way, whatever order a request or the stored consent
    has them in."""
    ordered = sorted(set(scopes), key=lambda s: (_SCOPE_ORDER.get(s, len(_SCOPE_ORDER)), s))
    return [(s, SCOPE_DESCRIPTIONS.get(s, s)) for s in ordered]
