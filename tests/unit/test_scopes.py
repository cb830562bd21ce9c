"""Which claims each scope releases (OIDC Core 5.4, 5.5), checked on the pure functions that
UserInfo and the ID token use. No app and no database: the user is a plain object."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from identity.oauth.scopes import (
    CLAIMS_SUPPORTED,
    KNOWN_SCOPES,
    describe,
    permitted_claims_request,
    released_claims,
)

USER_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
UPDATED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def person(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "id": USER_ID,
        "email": "alice@example.org",
        "is_verified": True,
        "updated_at": UPDATED,
        "name": "Alice Example",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


SUB = {"sub": str(USER_ID)}
PROFILE: dict[str, Any] = {
    "name": "Alice Example",
    "preferred_username": "Alice Example",
    "updated_at": int(UPDATED.timestamp()),
}
EMAIL = {"email": "alice@example.org", "email_verified": True}
ROLES = {"roles": ["admin", "staff"]}
PERMISSIONS = {"permissions": ["invoices:read"]}
# What identity.rbac finds the user has for the client asking (TokenService.access_of).
ACCESS = ROLES | PERMISSIONS


def test_openid_alone_releases_only_sub():
    """Without a claim scope the subject is all a client learns."""
    assert released_claims(person(), ["openid"]) == SUB
    assert released_claims(person(), ["openid", "offline_access", "address"]) == SUB


def test_OIDC_09_profile_releases_name_preferred_username_and_updated_at():
    """The profile scope releases the name, preferred_username and updated_at, no email."""
    assert released_claims(person(), ["openid", "profile"]) == SUB | PROFILE


def test_OIDC_10_email_releases_the_address_and_its_verification():
    """The email scope releases the address and whether it is verified, nothing else."""
    assert released_claims(person(), ["openid", "email"]) == SUB | EMAIL
    unverified = released_claims(person(is_verified=False), ["email"])
    assert unverified["email_verified"] is False


def test_roles_scope_releases_the_role_names():
    """The roles scope releases the user's role names, the permissions scope their
    permissions for the client, and only they do."""
    assert released_claims(person(), ["openid", "roles"], access=ACCESS) == SUB | ROLES
    assert released_claims(person(), ["openid", "permissions"], access=ACCESS) == (
        SUB | PERMISSIONS
    )
    other = released_claims(person(), ["openid", "profile", "email"], access=ACCESS)
    assert "roles" not in other and "permissions" not in other


def test_OIDC_13_every_scope_releases_each_claim_the_user_has():
    """All scopes together release every claim group; a user without a name gets no name
    or preferred_username claim rather than an empty one."""
    everything = ["openid", "profile", "email", "roles", "permissions", "offline_access"]
    released = released_claims(person(), everything, access=ACCESS)
    assert released == SUB | PROFILE | EMAIL | ROLES | PERMISSIONS
    nameless = released_claims(person(name=None), everything, access=ACCESS)
    assert "name" not in nameless and "preferred_username" not in nameless
    assert nameless["updated_at"] == PROFILE["updated_at"]


def test_OIDC_13_requested_claims_are_released_only_within_the_clients_scopes():
    """A claim asked for by name (the claims parameter) is released only when the client
    may have a scope carrying it, and only if the server holds it."""
    requested = {"email": None, "roles": {"essential": True}, "phone_number": None}
    granted = released_claims(person(), ["openid"], requested, client_scopes=["openid", "email"])
    assert granted == SUB | {"email": "alice@example.org"}
    assert released_claims(person(), ["openid"], requested) == SUB
    assert released_claims(person(), ["openid"], None, ["email"]) == SUB
    assert released_claims(person(name=None), ["openid"], {"name": None}, ["profile"]) == SUB


def test_OIDC_13_claims_request_is_cut_down_to_the_clients_scopes():
    """The stored claims request keeps protocol claims and the user claims of the client's
    scopes, for the userinfo and id_token members only."""
    request = {
        "userinfo": {"email": None, "name": {"essential": True}, "acr": {"values": ["1"]}},
        "id_token": {"roles": None, "auth_time": {"essential": True}},
        "other": {"name": None},
        "empty": None,
    }
    assert permitted_claims_request(request, ["openid", "profile"]) == {
        "userinfo": {"name": {"essential": True}, "acr": {"values": ["1"]}},
        "id_token": {"auth_time": {"essential": True}},
    }
    assert permitted_claims_request({"userinfo": None}, ["openid"]) == {"userinfo": {}}


def test_only_scopes_with_data_behind_them_are_known():
    """identity offers openid, profile, email, offline_access, roles and permissions, and
    identity:admin for the admin API: no address or phone scope, for it holds no such
    data."""
    assert {
        "openid",
        "profile",
        "email",
        "offline_access",
        "roles",
        "permissions",
        "identity:admin",
    } == KNOWN_SCOPES


def test_claims_supported_are_the_protocol_claims_and_what_scopes_release():
    """Discovery's claims_supported is exact: protocol claims plus the scopes' user claims."""
    user_claims = {"name", "preferred_username", "updated_at", "email", "email_verified"}
    protocol = {"sub", "iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "acr", "amr"}
    expected = protocol | {"at_hash", "sid", "roles", "permissions"} | user_claims
    assert sorted(expected) == CLAIMS_SUPPORTED


def test_describe_lists_each_scope_once_in_a_fixed_order():
    """Scopes are described in one order whatever the request's, unknown ones last."""
    described = describe(["zeta", "roles", "email", "openid", "email", "alpha"])
    assert described == [
        ("openid", "Sign you in with your identity account"),
        ("email", "See your email address"),
        ("roles", "See the roles you have"),
        ("alpha", "alpha"),
        ("zeta", "zeta"),
    ]
