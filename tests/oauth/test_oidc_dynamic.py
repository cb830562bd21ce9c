"""OpenID Foundation dynamic and request-object modules, ported (OIDC-DYN-*), with the
issue 7 points they cover: clients registered through RFC 7591 and read through RFC 7592,
remembered consent for such clients (prompt=none, id_token_hint), and request objects by
value and by reference (RFC 9101)."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.oauth.conftest import (
    ModeFlow,
    RegisteredClient,
    bearer,
    callback,
    callback_params,
    pkce_pair,
    redeem,
    unverified,
)

pytestmark = pytest.mark.usefixtures("fast_keys", "keys")
DCR_TOKEN = "initial-access-token-" + "d" * 24
ISSUER = "http://127.0.0.1:8000"
REQUEST_URI = "https://rp.example.org/requests/1.jwt"


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory(dcr_initial_access_token=DCR_TOKEN)


class DynamicClient(RegisteredClient):
    """A client registered through /oauth/register, with its own signing key."""

    key: Any
    registration: dict[str, Any]


def register(client: Any, **metadata: Any) -> Any:
    body = {"redirect_uris": ["https://rp.example.org/cb"], **metadata}
    return client.post(
        "/oauth/register", json=body, headers={"Authorization": f"Bearer {DCR_TOKEN}"}
    )


@pytest.fixture
def dynamic(client: Any) -> DynamicClient:
    """A client registered as the conformance suite registers one: keys, request_uris, and
    (like many relying parties) no client_name."""
    key = ECKey.generate_key("P-256", {"kid": "rp-1", "alg": "ES256", "use": "sig"})
    response = register(
        client,
        jwks={"keys": [key.as_dict(private=False)]},
        request_uris=[REQUEST_URI],
        grant_types=["authorization_code", "refresh_token"],
        scope="openid profile email offline_access",
    )
    assert response.status_code == 201, response.json
    body = response.json
    rp = DynamicClient(body["client_id"], body["client_secret"], "https://rp.example.org/cb")
    rp.key = key
    rp.registration = body
    return rp


def request_object(rp: DynamicClient, key: Any = None, alg: str = "ES256", **claims: Any) -> str:
    _, challenge = pkce_pair()
    body = {
        "iss": rp.client_id,
        "aud": ISSUER,
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid email",
        "state": "state-in-object",
        "nonce": "nonce-in-object",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **claims,
    }
    header = {"alg": alg, "kid": "rp-1", "typ": "oauth-authz-req+jwt"}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key or rp.key)


def consent_once(browser: Any, rp: DynamicClient) -> dict[str, str]:
    """The first authorization of a dynamic client: consent page, then the code."""
    flow = ModeFlow(browser, "query")
    response, _ = flow.start(rp)
    assert response.status_code == 200
    return callback(flow.follow_to_client(response), rp.redirect_uri)


def authorize_with(browser: Any, rp: DynamicClient, **params: str) -> dict[str, str]:
    """The answer to /authorize as the client gets it: a redirect, or for an error the link
    on the page that tells the user the client is unreviewed (BCP-07)."""
    query = "&".join(f"{k}={v}" for k, v in {"client_id": rp.client_id, **params}.items())
    response = browser.get("/authorize?" + query)
    if response.status_code == 400 and b"has not been reviewed" in response.data:
        links = re.findall(r'href="([^"]+)"', response.get_data(as_text=True))
        back = [html.unescape(h) for h in links if h.startswith(rp.redirect_uri + "?")]
        assert len(back) == 1, links
        return callback_params(back[0])
    assert response.status_code in (302, 303), response.data[:400]
    location = response.headers["Location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    return callback_params(location)


# Registration (RFC 7591, RFC 7592) ---------------------------------------------------------


def test_OIDC_DYN_registration_without_client_name(client, dynamic, signed_in):
    """ISSUE7-12: client_name is optional; the consent page names the redirect URI's host."""
    assert "client_name" not in dynamic.registration
    response, _ = ModeFlow(signed_in, "query").start(dynamic)
    assert response.status_code == 200
    assert b"rp.example.org wants to access your account" in response.data


def test_OIDC_DYN_registration_read(client, dynamic):
    """OP-Registration-Read, ISSUE7-13: reading the registration answers with the client's
    metadata, registration_client_uri and a registration_access_token, which replaces the
    old one."""
    uri = dynamic.registration["registration_client_uri"]
    path = uri.removeprefix(ISSUER)
    old = dynamic.registration["registration_access_token"]
    read = client.get(path, headers=bearer(old))
    assert read.status_code == 200, read.json
    body = read.json
    assert body["client_id"] == dynamic.client_id
    assert body["registration_client_uri"] == uri
    assert body["redirect_uris"] == ["https://rp.example.org/cb"]
    assert body["request_uris"] == [REQUEST_URI]
    new = body["registration_access_token"]
    assert new and new != old
    assert "client_secret" not in body and "accepted_auth_methods" not in body
    assert client.get(path, headers=bearer(old)).status_code == 401
    assert client.get(path, headers=bearer(new)).status_code == 200


def test_OIDC_DYN_prompt_none_when_logged_in(client, dynamic, signed_in):
    """oidcc-prompt-none-logged-in, ISSUE7-14: after the user consented once, a dynamic
    client's prompt=none request gets a code, not consent_required."""
    assert "code" in consent_once(signed_in, dynamic)
    response, _ = ModeFlow(signed_in, "query").start(dynamic, prompt="none")
    assert "code" in callback(response, dynamic.redirect_uri)


def test_OIDC_DYN_id_token_hint(client, dynamic, signed_in):
    """oidcc-id-token-hint: prompt=none with the ID token of the signed-in user gets a code
    whose ID token names the same subject."""
    consent_once(signed_in, dynamic)
    flow = ModeFlow(signed_in, "query")
    hint = flow.tokens(dynamic)["id_token"]
    response, verifier = flow.start(dynamic, prompt="none", id_token_hint=hint)
    params = callback(response, dynamic.redirect_uri)
    assert "code" in params, params
    again = redeem(client, dynamic, params["code"], verifier).json
    assert unverified(again["id_token"])[1]["sub"] == unverified(hint)[1]["sub"]


# Request objects (RFC 9101, OIDC Core 6) ---------------------------------------------------


def test_OIDC_DYN_request_object_by_value(client, dynamic, signed_in):
    """oidcc-request-object (signed), oidcc-ensure-request-object-with-redirect-uri: the
    parameters come from the signed object only; the URL needs just client_id."""
    consent_once(signed_in, dynamic)
    params = authorize_with(signed_in, dynamic, request=request_object(dynamic))
    assert params["state"] == "state-in-object" and "code" in params


def test_OIDC_DYN_request_uri(client, dynamic, signed_in, monkeypatch):
    """oidcc-request-uri-signed: the object is fetched from the registered request_uri."""
    from identity.oauth.authorize import request_objects

    consent_once(signed_in, dynamic)
    token = request_object(dynamic, state="from-uri")
    fetched: list[str] = []

    def fetch(url: str, **_: Any) -> bytes:
        fetched.append(url)
        return token.encode()

    monkeypatch.setattr(request_objects, "fetch", fetch)
    params = authorize_with(signed_in, dynamic, request_uri=REQUEST_URI)
    assert params["state"] == "from-uri" and "code" in params
    assert fetched == [REQUEST_URI]


def test_OIDC_DYN_request_object_claims_reach_the_id_token(client, dynamic, signed_in):
    """A claims request inside the object is honoured like one in the URL."""
    consent_once(signed_in, dynamic)
    verifier, challenge = pkce_pair()
    token = request_object(
        dynamic,
        scope="openid",
        code_challenge=challenge,
        claims={"id_token": {"email": {"essential": True}}},
    )
    flow = ModeFlow(signed_in, "query")
    response = flow.follow_to_client(
        signed_in.get(f"/authorize?client_id={dynamic.client_id}&request={token}")
    )
    params = callback(response, dynamic.redirect_uri)
    body = redeem(client, dynamic, params["code"], verifier).json
    assert unverified(body["id_token"])[1]["email"] == "alice@example.org"


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("another key", "invalid_request_object"),
        ("wrong audience", "invalid_request_object"),
        ("expired", "invalid_request_object"),
        ("other client_id inside", "invalid_request_object"),
        ("unsigned", "invalid_request_object"),
        ("not a JWT", "invalid_request_object"),
        ("nested request", "invalid_request_object"),
        ("unregistered request_uri", "invalid_request_uri"),
        ("request and request_uri", "invalid_request"),
    ],
)
def test_OIDC_DYN_bad_request_objects_are_refused(client, dynamic, signed_in, case, error):
    """A request object that is not the client's, not for us, stale or malformed is refused
    at the URL's registered redirect URI, with the URL's state, and nothing is issued."""
    from tests.oauth.conftest import forge

    consent_once(signed_in, dynamic)
    other = ECKey.generate_key("P-256", {"kid": "rp-1"})
    extra: dict[str, str] = {}
    token = {
        "another key": lambda: request_object(dynamic, key=other),
        "wrong audience": lambda: request_object(dynamic, aud="https://other.example"),
        "expired": lambda: request_object(dynamic, exp=int(time.time()) - 120),
        "other client_id inside": lambda: request_object(dynamic, client_id="someone-else"),
        "unsigned": lambda: forge({"alg": "none"}, {"aud": ISSUER, "client_id": "x"}),
        "not a JWT": lambda: "e30.e30",
        "nested request": lambda: request_object(dynamic, request_uri=REQUEST_URI),
        "unregistered request_uri": lambda: None,
        "request and request_uri": lambda: request_object(dynamic),
    }[case]()
    if token is not None:
        extra["request"] = token
    if case in ("unregistered request_uri", "request and request_uri"):
        extra["request_uri"] = "https://evil.example/x.jwt"
    params = authorize_with(
        signed_in, dynamic, redirect_uri=dynamic.redirect_uri, state="url-state", **extra
    )
    assert params["error"] == error, params
    assert params["state"] == "url-state" and "code" not in params


def test_OIDC_DYN_registered_request_object_alg_is_enforced(client, signed_in):
    """A client that registered request_object_signing_alg RS256 cannot send an ES256 one."""
    key = RSAKey.generate_key(2048, {"kid": "rp-1", "alg": "RS256"})
    ec = ECKey.generate_key("P-256", {"kid": "rp-ec"})
    response = register(
        client,
        jwks={"keys": [key.as_dict(private=False), ec.as_dict(private=False)]},
        request_object_signing_alg="RS256",
    )
    assert response.status_code == 201, response.json
    rp = DynamicClient(response.json["client_id"], None, "https://rp.example.org/cb")
    rp.key = key
    consent_once(signed_in, rp)
    good = authorize_with(signed_in, rp, request=request_object(rp, alg="RS256"))
    assert "code" in good
    bad = jwt.encode(
        {"alg": "ES256", "kid": "rp-ec"},
        {"aud": ISSUER, "client_id": rp.client_id, "response_type": "code"},
        ec,
    )
    refused = authorize_with(signed_in, rp, request=bad, redirect_uri=rp.redirect_uri)
    assert refused["error"] == "invalid_request_object"


def test_OIDC_DYN_pushed_request_object(client, dynamic, signed_in):
    """RFC 9126 section 3: a request object may be pushed; the request_uri it gets works."""
    consent_once(signed_in, dynamic)
    pushed = client.post(
        "/oauth/par", data={"request": request_object(dynamic)}, headers=dynamic.basic_auth()
    )
    assert pushed.status_code == 201, pushed.json
    params = authorize_with(signed_in, dynamic, request_uri=pushed.json["request_uri"])
    assert params["state"] == "state-in-object" and "code" in params


def test_OIDC_DYN_discovery_says_what_request_objects_may_be(client):
    """Discovery advertises request and request_uri, registration of request URIs, and only
    asymmetric signing algorithms (no "none", no HMAC)."""
    config = client.get("/.well-known/openid-configuration").json
    assert config["request_parameter_supported"] is True
    assert config["request_uri_parameter_supported"] is True
    assert config["require_request_uri_registration"] is True
    algs = config["request_object_signing_alg_values_supported"]
    assert "RS256" in algs and "ES256" in algs and "PS256" in algs
    assert not any(a == "none" or a.startswith("HS") for a in algs)
    assert json.dumps(algs)
