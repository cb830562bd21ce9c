"""OpenID Foundation basic plan modules (oidcc-basic-certification-test-plan), each run in
both response modes: the form_post plan is the basic plan again with
response_mode=form_post (OIDC-58), which the ``response_mode`` fixture parametrizes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import time_machine

from tests.oauth.conftest import (
    ModeFlow,
    bearer,
    callback,
    pkce_pair,
    redeem,
    token_request,
    unverified,
    verify_with_jwks,
)

pytestmark = pytest.mark.usefixtures("fast_keys")


def issuer(app: Any) -> str:
    return app.extensions["identity"].settings.issuer  # type: ignore[no-any-return]


def check_id_token(app: Any, client: Any, token: str, rp: Any, nonce: str | None) -> dict:
    """PerformStandardIdTokenChecks: signature by a JWKS key, iss, aud, exp, iat, nonce, sub."""
    header, _ = unverified(token)
    assert header["alg"] != "none" and header["kid"]
    claims = verify_with_jwks(client, token)
    now = time.time()
    assert claims["iss"] == issuer(app)
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert rp.client_id in aud
    if len(aud) > 1:
        assert claims["azp"] == rp.client_id
    assert now - 60 <= claims["iat"] <= now + 5
    assert claims["iat"] < claims["exp"] and claims["exp"] > now
    assert claims["exp"] - claims["iat"] <= 86400
    assert isinstance(claims["sub"], str) and 0 < len(claims["sub"]) <= 255
    if nonce is None:
        assert "nonce" not in claims
    else:
        assert claims["nonce"] == nonce
    return claims


def test_OIDC_01_happy_flow(app, client, mode_flow, rp):
    """oidcc-server: state and iss echoed, a no-store Bearer token response, a valid ID token and
    userinfo for the same sub."""
    params, verifier = mode_flow.authorize(rp)
    assert params["state"] == "state-123"
    assert params["iss"] == issuer(app)
    assert set(params) == {"code", "state", "iss"}
    response = redeem(client, rp, params["code"], verifier)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer"
    # Adequate entropy: at least 128 bits of base64url (RFC 6749 10.10).
    assert len(body["refresh_token"]) >= 22
    assert len(body["access_token"]) >= 22 and body["access_token"] != body["refresh_token"]
    claims = check_id_token(app, client, body["id_token"], rp, "nonce-456")
    info = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert info.status_code == 200
    assert info.json["sub"] == claims["sub"]


def test_OIDC_02_missing_response_type_is_an_error(app, mode_flow, rp, signed_in):
    """oidcc-response-type-missing: the client gets an error (with state and iss), never a code."""
    response, _ = mode_flow.start(rp, response_type=None)
    params = callback(response, rp.redirect_uri)
    assert params["error"] in ("unsupported_response_type", "invalid_request")
    assert "code" not in params
    assert params["state"] == "state-123" and params["iss"] == issuer(app)


def test_OIDC_03_id_token_is_signed_and_verifiable_from_jwks(app, client, mode_flow, rp):
    """oidcc-idtoken-signature: without asking for an alg the ID token is signed by a key in
    jwks_uri."""
    body = mode_flow.tokens(rp)
    header, _ = unverified(body["id_token"])
    assert header["alg"] in ("RS256", "ES256")
    assert header["kid"] in {k["kid"] for k in client.get("/jwks.json").json["keys"]}
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_03_registered_rs256_client_gets_rs256_id_tokens(app, client, mode_flow, make_client):
    """A client registered for RS256 ID tokens gets RS256 ID tokens verifiable from jwks_uri."""
    rp = make_client(id_token_signed_response_alg="RS256")
    body = mode_flow.tokens(rp)
    assert unverified(body["id_token"])[0]["alg"] == "RS256"
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_05_userinfo_get_with_bearer_header(client, mode_flow, rp):
    """oidcc-userinfo-get: GET with Authorization: Bearer gives JSON whose sub is the ID token's."""
    body = mode_flow.tokens(rp)
    response = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json["sub"] == unverified(body["id_token"])[1]["sub"]


def test_OIDC_06_userinfo_post_with_bearer_header(client, mode_flow, rp):
    """oidcc-userinfo-post-header: POST with Authorization: Bearer gives the same JSON."""
    body = mode_flow.tokens(rp)
    response = client.post("/userinfo", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    assert response.json["sub"] == unverified(body["id_token"])[1]["sub"]


def test_OIDC_07_userinfo_post_body_works_and_query_is_refused(client, mode_flow, rp):
    """oidcc-userinfo-post-body: the token in a form body works; in the URL query it is refused."""
    body = mode_flow.tokens(rp)
    token = body["access_token"]
    response = client.post("/userinfo", data={"access_token": token})
    assert response.status_code == 200
    assert response.json["sub"] == unverified(body["id_token"])[1]["sub"]
    for method in (client.get, client.post):
        response = method("/userinfo?" + urlencode({"access_token": token}))
        assert response.status_code in (400, 401)
        assert "sub" not in (response.json or {})


def test_OIDC_08_code_flow_without_nonce_succeeds(app, client, mode_flow, rp):
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow: a code is issued and the ID token
    has no nonce."""
    params, verifier = mode_flow.authorize(rp, nonce=None)
    assert "code" in params
    response = redeem(client, rp, params["code"], verifier)
    assert response.status_code == 200
    check_id_token(app, client, response.json["id_token"], rp, None)


def test_OIDC_14_alternate_happy_flow(app, client, mode_flow, rp, signed_in):
    """oidcc-alternate-happy-flow: reversed scope order and reordered parameters still succeed."""
    verifier, challenge = pkce_pair()
    query = [
        ("nonce", "n-2"),
        ("state", "s-2"),
        ("scope", "email profile openid"),
        ("code_challenge_method", "S256"),
        ("code_challenge", challenge),
        ("redirect_uri", rp.redirect_uri),
        ("client_id", rp.client_id),
        ("response_type", "code"),
    ]
    if mode_flow.mode != "query":
        query.insert(0, ("response_mode", mode_flow.mode))
    response = mode_flow.follow_to_client(client.get("/authorize?" + urlencode(query)))
    params = callback(response, rp.redirect_uri)
    assert params["state"] == "s-2"
    tokens = redeem(client, rp, params["code"], verifier)
    assert tokens.status_code == 200
    assert set(tokens.json["scope"].split()) == {"openid", "profile", "email"}
    check_id_token(app, client, tokens.json["id_token"], rp, "n-2")


def test_OIDC_16_display_popup(app, client, mode_flow, rp):
    """oidcc-display-popup: display=popup causes no error and the flow succeeds."""
    body = mode_flow.tokens(rp, display="popup")
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_22_unknown_parameter_is_ignored(app, client, mode_flow, rp):
    """oidcc-ensure-request-with-unknown-parameter-succeeds: extra=foobar is ignored (RFC 6749
    3.1) and not echoed back."""
    params, verifier = mode_flow.authorize(rp, extra="foobar")
    assert "extra" not in params
    response = redeem(client, rp, params["code"], verifier)
    assert response.status_code == 200
    check_id_token(app, client, response.json["id_token"], rp, "nonce-456")


def test_OIDC_25_ui_locales(app, client, mode_flow, rp):
    """oidcc-ui-locales: ui_locales=se (unsupported) causes no error."""
    body = mode_flow.tokens(rp, ui_locales="se")
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_26_claims_locales(app, client, mode_flow, rp):
    """oidcc-claims-locales: claims_locales=se (unsupported) causes no error."""
    body = mode_flow.tokens(rp, claims_locales="se")
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_15_display_page(app, client, mode_flow, rp):
    """oidcc-display-page: display=page shows the normal sign-in page and the flow succeeds."""
    response, _ = mode_flow.start(rp, display="page")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and b'name="password"' in page.data
    body = mode_flow.tokens(rp, display="page")
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_24_login_hint_prefills_escaped(app, client, mode_flow, rp):
    """oidcc-login-hint: the hint only pre-fills the email field, HTML-escaped, and the flow
    succeeds."""
    hostile = 'alice@example.org"><script>alert(1)</script>'
    response, _ = mode_flow.start(rp, login_hint=hostile)
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert b"<script>alert(1)</script>" not in page.data
    assert b"alice@example.org&#34;&gt;&lt;script&gt;" in page.data or (
        b"alice@example.org&quot;&gt;&lt;script&gt;" in page.data
    )
    body = mode_flow.tokens(rp, login_hint="alice@example.org")
    check_id_token(app, client, body["id_token"], rp, "nonce-456")


def test_OIDC_27_acr_values_request_succeeds(app, client, mode_flow, rp):
    """oidcc-ensure-request-with-acr-values-succeeds: advertised acr_values do not cause an error;
    any acr returned is one requested."""
    supported = client.get("/.well-known/openid-configuration").json["acr_values_supported"]
    body = mode_flow.tokens(rp, acr_values=" ".join(supported))
    claims = check_id_token(app, client, body["id_token"], rp, "nonce-456")
    if "acr" in claims:
        assert claims["acr"] in supported


def test_OIDC_28_code_reuse_is_invalid_grant(client, mode_flow, rp):
    """oidcc-codereuse: a code redeemed twice in a row gets invalid_grant the second time."""
    params, verifier = mode_flow.authorize(rp)
    assert redeem(client, rp, params["code"], verifier).status_code == 200
    again = redeem(client, rp, params["code"], verifier)
    assert again.status_code == 400
    assert again.mimetype == "application/json"
    assert again.json["error"] == "invalid_grant"
    assert again.headers["Cache-Control"] == "no-store"


def test_OIDC_29_code_reuse_after_30_seconds_revokes_first_tokens(client, mode_flow, rp):
    """oidcc-codereuse-30seconds: reuse 30 s later is invalid_grant and the first access and refresh
    tokens die."""
    params, verifier = mode_flow.authorize(rp)
    first = redeem(client, rp, params["code"], verifier)
    assert first.status_code == 200
    assert client.get("/userinfo", headers=bearer(first.json["access_token"])).status_code == 200
    with time_machine.travel(time.time() + 30, tick=True):
        again = redeem(client, rp, params["code"], verifier)
        assert again.status_code == 400 and again.json["error"] == "invalid_grant"
        info = client.get("/userinfo", headers=bearer(first.json["access_token"]))
        assert info.status_code == 401
        refresh = token_request(
            client, rp, grant_type="refresh_token", refresh_token=first.json["refresh_token"]
        )
        assert refresh.status_code == 400 and refresh.json["error"] == "invalid_grant"


def test_OIDC_30_unregistered_redirect_uri_gets_an_error_page(client, mode_flow, rp, signed_in):
    """oidcc-ensure-registered-redirect-uri: an unregistered redirect_uri is answered on our page,
    never redirected or posted to."""
    response, _ = mode_flow.start(rp, redirect_uri="https://attacker.example.net/cb")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert b"attacker.example.net" not in response.data
    assert b"<form" not in response.data or b'action="https://attacker' not in response.data


def test_OIDC_31_authorization_request_by_post_succeeds(app, client, mode_flow, rp):
    """oidcc-ensure-post-request-succeeds: the authorization request sent as a form POST works."""
    verifier, challenge = pkce_pair()
    data = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid profile",
        "state": "post-state",
        "nonce": "post-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if mode_flow.mode != "query":
        data["response_mode"] = mode_flow.mode
    response = mode_flow.follow_to_client(client.post("/authorize", data=data))
    params = callback(response, rp.redirect_uri)
    assert params["state"] == "post-state"
    tokens = redeem(client, rp, params["code"], verifier)
    assert tokens.status_code == 200
    check_id_token(app, client, tokens.json["id_token"], rp, "post-nonce")


def test_OIDC_32_client_secret_post_happy_flow(app, client, mode_flow, make_client):
    """oidcc-server-client-secret-post: the flow works with the secret in the token request body."""
    rp = make_client(auth_method="client_secret_post")
    params, verifier = mode_flow.authorize(rp)
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": rp.redirect_uri,
            "code_verifier": verifier,
            "client_id": rp.client_id,
            "client_secret": rp.client_secret,
        },
    )
    assert response.status_code == 200, response.json
    check_id_token(app, client, response.json["id_token"], rp, "nonce-456")
    # The same client may not switch to HTTP Basic (its registered method is the one used).
    basic = redeem(client, rp, params["code"], verifier)
    assert basic.status_code in (400, 401)


def test_OIDC_33_unregistered_request_uri_is_rejected(app, client, mode_flow, rp, signed_in):
    """oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported: request_uri
    is supported from registered URLs only (require_request_uri_registration), so another
    gets invalid_request_uri, answered with the state and nothing fetched."""
    config = client.get("/.well-known/openid-configuration").json
    assert config["request_uri_parameter_supported"] is True
    assert config["require_request_uri_registration"] is True
    response, _ = mode_flow.start(rp, request_uri="https://rp.example.org/request.jwt")
    params = callback(response, rp.redirect_uri)
    assert params["error"] == "invalid_request_uri"
    assert params["state"] == "state-123" and "code" not in params


def _unsigned_request_object(rp: Any, **claims: Any) -> str:
    from tests.oauth.conftest import forge

    return forge(
        {"alg": "none"},
        {
            "iss": rp.client_id,
            "aud": "http://127.0.0.1:8000",
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": rp.redirect_uri,
            "scope": "openid",
            **claims,
        },
    )


def test_OIDC_34_unsigned_request_object_is_rejected(client, mode_flow, rp, signed_in):
    """oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported: request
    objects are supported signed only ("none" is not advertised), so an unsigned one gets
    invalid_request_object, never silently ignored."""
    config = client.get("/.well-known/openid-configuration").json
    assert config["request_parameter_supported"] is True
    assert "none" not in config["request_object_signing_alg_values_supported"]
    response, _ = mode_flow.start(rp, request=_unsigned_request_object(rp))
    params = callback(response, rp.redirect_uri)
    assert params["error"] == "invalid_request_object"
    assert "code" not in params


def test_OIDC_36_request_object_redirect_uri_is_never_used(
    client, mode_flow, make_client, signed_in
):
    """An unsigned request object naming another registered URI is refused, and answered at
    the query's URI: nothing in an untrusted object is used."""
    rp = make_client(redirect_uris=["https://rp.example.org/cb", "https://rp.example.org/other"])
    request_object = _unsigned_request_object(rp, redirect_uri="https://rp.example.org/other")
    response, _ = mode_flow.start(rp, request=request_object)
    params = callback(response, "https://rp.example.org/cb")
    assert params["error"] == "invalid_request_object"
    assert "code" not in params


def test_OIDC_37_refresh_token_flow(app, client, mode_flow, make_client):
    """oidcc-refresh-token: refreshing gives no-store tokens and an ID token with the same iss, sub,
    aud and auth_time and no nonce."""
    rp = make_client()
    body = mode_flow.tokens(rp, scope="openid profile offline_access", prompt="consent")
    assert "refresh_token" in body
    first = check_id_token(app, client, body["id_token"], rp, "nonce-456")
    response = token_request(
        client, rp, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json["refresh_token"] != body["refresh_token"]
    second = check_id_token(app, client, response.json["id_token"], rp, None)
    for claim in ("iss", "sub", "aud", "auth_time"):
        assert second[claim] == first[claim], claim
    info = client.get("/userinfo", headers=bearer(response.json["access_token"]))
    assert info.status_code == 200 and info.json["sub"] == first["sub"]


def test_OIDC_37_refresh_token_of_another_client_is_refused(client, mode_flow, make_client):
    """oidcc-refresh-token: client 2's refresh token presented by client 1 is invalid_grant and
    stays usable by client 2."""
    client1 = make_client("One")
    client2 = make_client("Two")
    body = mode_flow.tokens(client2, scope="openid offline_access", prompt="consent")
    stolen = token_request(
        client, client1, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert stolen.status_code == 400 and stolen.json["error"] == "invalid_grant"
    own = token_request(
        client, client2, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert own.status_code == 200


def test_OIDC_38_valid_pkce_succeeds(app, client, mode_flow, rp):
    """oidcc-ensure-request-with-valid-pkce-succeeds: S256 challenge and matching verifier give
    tokens; a wrong verifier does not."""
    params, verifier = mode_flow.authorize(rp)
    wrong = redeem(client, rp, params["code"], pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"
    params, verifier = mode_flow.authorize(rp)
    response = redeem(client, rp, params["code"], verifier)
    assert response.status_code == 200
    check_id_token(app, client, response.json["id_token"], rp, "nonce-456")


# The form_post plan's own checks (OIDC-58) ---------------------------------------------


def test_OIDC_58_form_post_callback_is_an_html_form_post(app, client, user, rp):
    """The code arrives in an auto-submitted POST form to the redirect URI, never in a URL, and the
    page may only post there."""
    flow = ModeFlow(client, "form_post")
    response, verifier = flow.start(rp)
    response = flow.follow_to_client(response)
    assert response.status_code == 200
    params = callback(response, rp.redirect_uri)
    assert set(params) == {"code", "state", "iss"}
    html = response.get_data(as_text=True)
    assert params["code"] not in response.headers.get("Location", "")
    assert 'src="/static/form_post.js"' in html  # no inline script (CSP script-src 'self')
    csp = response.headers["Content-Security-Policy"]
    assert "form-action https://rp.example.org" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers.get("Cache-Control", "").startswith("no-store") or (
        "no-store" in response.headers.get("Cache-Control", "")
    )
    tokens = redeem(client, rp, params["code"], verifier)
    assert tokens.status_code == 200


def test_OIDC_58_form_post_errors_are_posted_too(app, client, user, rp):
    """An error answer in form_post mode is a POST form to the redirect URI as well, with state and
    iss."""
    flow = ModeFlow(client, "form_post")
    response, _ = flow.start(rp, prompt="none")
    params = callback(response, rp.redirect_uri)
    assert response.status_code == 200
    assert params["error"] == "login_required"
    assert params["state"] == "state-123" and params["iss"] == issuer(app)


def test_OIDC_58_form_post_values_are_html_escaped(client, user, rp, signed_in):
    """A hostile state is escaped in the form and comes back byte-for-byte."""
    state = '"><script>alert(1)</script>&amp;'
    flow = ModeFlow(client, "form_post")
    response, _ = flow.start(rp, state=state, prompt="none")
    assert b"<script>alert(1)</script>" not in response.data
    assert callback(response, rp.redirect_uri)["state"] == state


def test_OIDC_58_code_lifetime_is_short(app):
    """Codes delivered by either mode are short-lived (10 minutes at most)."""
    lifetime = app.extensions["identity"].settings.authorization_code_lifetime
    assert timedelta(seconds=lifetime) <= timedelta(minutes=10)
