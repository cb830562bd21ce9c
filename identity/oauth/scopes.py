"""Scopes, what they mean in plain words, and the claims each one releases (OIDC Core 5.4)."""

from __future__ import annotations

from typing import Any

from identity.models.user import User

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "openid": "Sign you in with your identity account",
    "profile": "See your name",
    "email": "See your email address",
    "address": "See your postal address",
    "phone": "See your phone number",
    "offline_access": "Stay connected when you are not using the app",
    "roles": "See the roles you have",
}
KNOWN_SCOPES = set(SCOPE_DESCRIPTIONS)

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": (
        "name",
        "family_name",
        "given_name",
        "middle_name",
        "nickname",
        "preferred_username",
        "profile",
        "picture",
        "website",
        "gender",
        "birthdate",
        "zoneinfo",
        "locale",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
    "roles": ("roles",),
}
CLAIMS_SUPPORTED = sorted(
    {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid"}
    | {claim for claims in SCOPE_CLAIMS.values() for claim in claims}
)


def user_claims(user: User) -> dict[str, Any]:
    """Every claim the server knows about a user; scopes choose among them."""
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "email": user.email,
        "email_verified": user.is_verified,
        "updated_at": int(user.updated_at.timestamp()),
        "roles": user.role_names,
    }
    if user.name:
        claims["name"] = user.name
        claims["preferred_username"] = user.name
    return claims


def released_claims(
    user: User, scopes: list[str], requested: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Claims for the granted scopes, plus individually requested ones (OIDC Core 5.5).

    Claims the server does not hold (address, phone) are simply absent, which the spec
    allows; ``sub`` is always present.
    """
    known = user_claims(user)
    names: set[str] = {"sub"}
    for scope in scopes:
        names.update(SCOPE_CLAIMS.get(scope, ()))
    if requested:
        names.update(name for name in requested if name in known)
    return {name: known[name] for name in sorted(names) if name in known}


def describe(scopes: list[str]) -> list[tuple[str, str]]:
    return [(s, SCOPE_DESCRIPTIONS.get(s, s)) for s in scopes]
