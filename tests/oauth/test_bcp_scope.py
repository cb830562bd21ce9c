"""RFC 9700 sections 2.3 and 4.10: access tokens are restricted to their audience and to
the scopes the client may have and the user granted (BCP-31, BCP-32)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.oauth.bcp_support import (
    consent_form,
    install_keys,
    introspect,
    issuer,
    query,
    redeem,
    signed_in_browser,
    tokens_for,
    userinfo_status,
)
from tests.oauth.conftest import REDIRECT_URI, pkce_pair, token_request

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


def authorize(browser, rp, scope, **params):
    verifier, challenge = pkce_pair()
    values = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": scope,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    return browser.get("/authorize?" + urlencode(values)), verifier


def consent_and_redeem(browser, client, rp, scope, **params):
    page, verifier = authorize(browser, rp, scope, **params)
    assert page.status_code == 200, page.headers.get("Location")
    response = browser.post("/authorize/consent", data={**consent_form(page), "decision": "allow"})
    callback = query(response.headers["Location"])
    return redeem(client, rp, callback["code"][0], verifier).json, page


# BCP-31 ---------------------------------------------------------------------------------


def test_BCP_31_access_tokens_name_their_audience_and_client(app, make_client, user, client):
    """A resource server introspecting a token learns its audience, client and issuer."""
    rp = make_client(first_party=True)
    resource = make_client(
        grant_types=["client_credentials"], redirect_uris=[], scope="roles", resource_server=True
    )
    tokens = tokens_for(signed_in_browser(app), rp)
    info = introspect(client, resource, tokens["access_token"])
    assert info["active"] is True
    assert info["aud"] == rp.client_id
    assert info["client_id"] == rp.client_id
    assert info["iss"] == issuer(app)


def test_BCP_31_other_clients_cannot_inspect_a_token(app, make_client, user, client):
    """A client that is neither the token's client nor a resource server sees it inactive."""
    rp = make_client(first_party=True)
    other = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    tokens = tokens_for(signed_in_browser(app), rp)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        info = introspect(client, other, token)
        assert info == {"active": False}, info


def test_BCP_31_service_tokens_are_not_user_tokens(make_client, client):
    """A client_credentials token is refused at userinfo and says it is the client's own."""
    service = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    token = token_request(client, service, grant_type="client_credentials").json["access_token"]
    assert userinfo_status(client, token) in (401, 403)
    info = introspect(client, service, token)
    assert info["sub"] == info["client_id"] == info["aud"] == service.client_id


def test_BCP_31_a_revoked_token_is_inactive_everywhere(app, make_client, user, client):
    """After revocation the access token fails at userinfo and introspection."""
    rp = make_client(first_party=True)
    tokens = tokens_for(signed_in_browser(app), rp)
    response = client.post(
        "/oauth/revoke", data={"token": tokens["access_token"]}, headers=rp.basic_auth()
    )
    assert response.status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert introspect(client, rp, tokens["access_token"])["active"] is False


def test_BCP_31_another_client_cannot_revoke_a_token(app, make_client, user, client):
    """Revocation by a client that does not own the token leaves it working."""
    rp = make_client(first_party=True)
    other = make_client()
    tokens = tokens_for(signed_in_browser(app), rp)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        client.post("/oauth/revoke", data={"token": token}, headers=other.basic_auth())
    assert userinfo_status(client, tokens["access_token"]) == 200
    assert introspect(client, rp, tokens["refresh_token"])["active"] is True


# BCP-32 ---------------------------------------------------------------------------------


def test_BCP_32_scopes_the_client_may_not_have_are_dropped(app, make_client, user, client):
    """Requested scopes beyond the client's allowance never reach a token."""
    rp = make_client(first_party=True, scope="openid profile")
    tokens = tokens_for(
        signed_in_browser(app), rp, scope="openid profile email roles offline_access admin"
    )
    assert set(tokens["scope"].split()) == {"openid", "profile"}
    assert set(introspect(client, rp, tokens["access_token"])["scope"].split()) == {
        "openid",
        "profile",
    }
    assert "refresh_token" in tokens  # the client's refresh grant, not offline_access
    claims = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json
    assert "email" not in claims and "roles" not in claims


def test_BCP_32_consent_page_lists_only_grantable_scopes(app, make_client, user):
    """The user is asked only about scopes the client may have."""
    rp = make_client(scope="openid profile")
    page, _ = authorize(signed_in_browser(app), rp, "openid profile email roles")
    assert page.status_code == 200
    text = page.data.decode()
    assert "See your name" in text
    assert "See your email address" not in text and "See the roles you have" not in text


def test_BCP_32_granted_scope_is_what_the_user_consented_to(app, make_client, user, client):
    """A scope the user has not consented to yet brings the consent page back."""
    rp = make_client(scope="openid profile email")
    browser = signed_in_browser(app)
    tokens, _ = consent_and_redeem(browser, client, rp, "openid profile")
    assert set(tokens["scope"].split()) == {"openid", "profile"}
    again, _ = authorize(browser, rp, "openid profile")
    assert again.status_code == 302  # within the consent: no page
    wider, _ = authorize(browser, rp, "openid profile email")
    assert wider.status_code == 200 and b"See your email address" in wider.data
    silent, _ = authorize(browser, rp, "openid profile email", prompt="none")
    assert query(silent.headers["Location"])["error"] == ["consent_required"]


def test_BCP_32_declined_scopes_are_not_granted(app, make_client, user):
    """Declining grants nothing and is not remembered as consent for a later silent request."""
    rp = make_client(scope="openid profile email")
    browser = signed_in_browser(app)
    page, _ = authorize(browser, rp, "openid email")
    response = browser.post("/authorize/consent", data={**consent_form(page), "decision": "deny"})
    assert query(response.headers["Location"])["error"] == ["access_denied"]
    assert response.headers["Location"].startswith(REDIRECT_URI)
    silent, _ = authorize(browser, rp, "openid email", prompt="none")
    assert query(silent.headers["Location"])["error"] == ["consent_required"]


def test_BCP_32_client_credentials_scope_is_limited_to_the_client(make_client, client):
    """A service client gets only its registered scopes, never user scopes."""
    service = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    response = token_request(
        client, service, grant_type="client_credentials", scope="roles openid profile email"
    )
    assert response.status_code == 200, response.json
    assert response.json["scope"].split() == ["roles"]


def test_BCP_32_device_flow_scope_is_limited_to_the_client(make_client, client):
    """The device authorization grant keeps only the client's scopes."""
    from identity.extensions import db
    from identity.models.oauth import DeviceAuthorization

    device = make_client(grant_types=[DEVICE_CODE], scope="openid profile")
    response = client.post(
        "/oauth/device_authorization",
        data={"scope": "openid profile email roles"},
        headers=device.basic_auth(),
    )
    assert response.status_code == 200
    with client.application.app_context():
        row = db.session.query(DeviceAuthorization).one()
        assert set(row.scope.split()) == {"openid", "profile"}


# BCP-33 (P2) ----------------------------------------------------------------------------


def test_BCP_33_sender_constrained_tokens_are_not_claimed(app, make_client, user, client):
    """DPoP and mTLS binding are not offered, and nothing pretends they are: discovery
    advertises neither, and a DPoP header still yields a plain, unbound Bearer token."""
    document = client.get("/.well-known/openid-configuration").json
    assert "dpop_signing_alg_values_supported" not in document
    assert not document.get("tls_client_certificate_bound_access_tokens")
    rp = make_client(first_party=True)
    page, verifier = authorize(signed_in_browser(app), rp, "openid")
    code = query(page.headers["Location"])["code"][0]
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": verifier,
        },
        headers={**rp.basic_auth(), "DPoP": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
    )
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "Bearer"
    assert "cnf" not in introspect(client, rp, response.json["access_token"])
