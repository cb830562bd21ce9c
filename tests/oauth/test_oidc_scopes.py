"""OpenID Foundation basic plan: scope and claims modules (OIDC Core 5.4, 5.5), in both
response modes (OIDC-58). The server holds no address or phone data, so it offers neither
scope (discovery's scopes_supported says so) and grants neither."""

from __future__ import annotations

import json
from typing import Any

import pytest

from identity.oauth.scopes import SCOPE_CLAIMS
from tests.oauth.conftest import bearer, unverified

pytestmark = pytest.mark.usefixtures("fast_keys")
ALL_SCOPES = "openid profile email offline_access roles"


@pytest.fixture
def user(make_user: Any) -> Any:
    """Alice with a name, so that the profile scope has something to release."""
    return make_user(name="Alice Example")


@pytest.fixture
def rp(make_client: Any) -> Any:
    return make_client(scope=ALL_SCOPES)


def userinfo_for(client: Any, mode_flow: Any, rp: Any, **params: str) -> tuple[dict, dict]:
    body = mode_flow.tokens(rp, **params)
    response = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert response.status_code == 200, response.json
    return response.json, unverified(body["id_token"])[1]


def allowed(*scopes: str) -> set[str]:
    names = {"sub"}
    for scope in scopes:
        names.update(SCOPE_CLAIMS.get(scope, ()))
    return names


def test_OIDC_09_scope_profile(client, mode_flow, rp):
    """oidcc-scope-profile: profile claims come from userinfo, and no email."""
    info, _ = userinfo_for(client, mode_flow, rp, scope="openid profile")
    assert info["name"] == "Alice Example"
    assert "updated_at" in info
    assert set(info) <= allowed("profile")
    assert "email" not in info


def test_OIDC_10_scope_email(client, mode_flow, rp):
    """oidcc-scope-email: email and email_verified come from userinfo, and no profile claims."""
    info, _ = userinfo_for(client, mode_flow, rp, scope="openid email")
    assert info["email"] == "alice@example.org"
    assert info["email_verified"] is True
    assert set(info) <= allowed("email")
    assert "name" not in info


def test_OIDC_10_email_is_not_leaked_without_its_scope(client, mode_flow, rp):
    """With scope=openid alone neither userinfo nor the ID token names the email or the name."""
    info, id_claims = userinfo_for(client, mode_flow, rp, scope="openid")
    for claims in (info, id_claims):
        assert "email" not in claims and "name" not in claims and "roles" not in claims
    assert set(info) == {"sub"}


def test_OIDC_11_scope_address_is_not_offered(client, mode_flow, rp):
    """oidcc-scope-address: the server holds no address, so the scope is not offered in
    discovery; asking for it still succeeds and grants nothing more."""
    assert "address" not in client.get("/.well-known/openid-configuration").json["scopes_supported"]
    body = mode_flow.tokens(rp, scope="openid address")
    assert body["scope"].split() == ["openid"]
    info = client.get("/userinfo", headers=bearer(body["access_token"])).json
    assert set(info) == {"sub"}


def test_OIDC_12_scope_phone_is_not_offered(client, mode_flow, rp):
    """oidcc-scope-phone: the server holds no phone number, so the scope is not offered;
    asking for it still succeeds and grants nothing more."""
    assert "phone" not in client.get("/.well-known/openid-configuration").json["scopes_supported"]
    body = mode_flow.tokens(rp, scope="openid phone")
    assert body["scope"].split() == ["openid"]


def test_OIDC_13_scope_all(client, mode_flow, rp):
    """oidcc-scope-all: every requested claim group that has data is returned, and nothing beyond
    them."""
    info, _ = userinfo_for(client, mode_flow, rp, scope="openid email profile")
    assert info["email"] == "alice@example.org"
    assert info["name"] == "Alice Example"
    assert set(info) <= allowed("email", "profile")
    assert "roles" not in info


def test_OIDC_13_scopes_the_client_may_not_have_are_dropped(client, mode_flow, make_client):
    """Scopes outside the client's registration are not granted and release nothing."""
    narrow = make_client(scope="openid")
    body = mode_flow.tokens(narrow, scope="openid email profile")
    assert body["scope"].split() == ["openid"]
    info = client.get("/userinfo", headers=bearer(body["access_token"])).json
    assert set(info) == {"sub"}


def test_OIDC_35_essential_claim_is_returned_from_userinfo(client, mode_flow, rp):
    """oidcc-claims-essential: claims={"userinfo":{"name":{"essential":true}}} returns name from
    userinfo even with scope=openid."""
    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    info, id_claims = userinfo_for(client, mode_flow, rp, scope="openid", claims=claims)
    assert info["name"] == "Alice Example"
    assert "email" not in info
    assert "name" not in id_claims  # asked for at userinfo only


def test_OIDC_35_id_token_claim_request_is_honoured(client, mode_flow, rp):
    """A claims request for the ID token puts that claim in the ID token only."""
    claims = json.dumps({"id_token": {"email": {"essential": True}}})
    info, id_claims = userinfo_for(client, mode_flow, rp, scope="openid", claims=claims)
    assert id_claims["email"] == "alice@example.org"
    assert "email" not in info


def test_OIDC_35_requested_claims_survive_a_refresh(client, mode_flow, rp):
    """Access tokens from a refresh keep the userinfo claims the user consented to."""
    from tests.oauth.conftest import token_request

    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    body = mode_flow.tokens(rp, scope="openid offline_access", claims=claims, prompt="consent")
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200
    info = client.get("/userinfo", headers=bearer(refreshed.json["access_token"])).json
    assert info["name"] == "Alice Example"


def test_OIDC_35_malformed_claims_parameter_is_invalid_request(client, mode_flow, rp, signed_in):
    """A claims parameter that is not a JSON object of objects is an invalid_request."""
    from tests.oauth.conftest import callback

    for value in ("not json", "[]", '{"userinfo": 5}'):
        response, _ = mode_flow.start(rp, claims=value)
        assert callback(response, rp.redirect_uri)["error"] == "invalid_request", value
