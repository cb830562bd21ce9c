"""Issue 7: protocol edges (CSP for forms that continue an authorization request, the CLI's
ID token algorithm, exact discovery, the claims parameter, what /authorize stores, bad input,
refused token requests). The rate limits of the issue are in
tests/functional/test_protocol_limits.py."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select

from tests.conftest import PASSWORD, csrf_token, sign_in
from tests.functional.conftest import cookie_value
from tests.oauth.bcp_support import install_keys, issuer, refresh, signed_in_browser
from tests.oauth.conftest import (
    REDIRECT_URI,
    ModeFlow,
    RegisteredClient,
    authorize_url,
    bearer,
    callback_params,
    pkce_pair,
    redeem,
    unverified,
    verify_with_jwks,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DCR_TOKEN = "initial-access-token-" + "q" * 32
CLIENT_ORIGIN = "https://rp.example.org"
# A claims parameter nested ~2000 levels deep that still fits the 4096-character limit of
# one parameter: Python's json module gives up with a RecursionError.
DEEP_CLAIMS = '{"userinfo":' + "[" * 2000 + "]" * 2000 + "}"


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


def form_action(response) -> list[str]:
    """The sources of the form-action directive of a response's CSP."""
    policy = response.headers["Content-Security-Policy"]
    for directive in policy.split(";"):
        name, _, sources = directive.strip().partition(" ")
        if name == "form-action":
            return sources.split()
    raise AssertionError(f"no form-action in {policy}")


def pending_rows(app) -> list[dict[str, str]]:
    """Grey-box: the params of every stored pending authorization request."""
    from identity.extensions import db
    from identity.models.oauth import PendingAuthorization

    with app.app_context():
        return [dict(row.params) for row in db.session.scalars(select(PendingAuthorization))]


# 1. CSP form-action -------------------------------------------------------------------------


def test_ISSUE7_01_consent_page_allows_the_client_redirect_origin_in_form_action(
    app, make_client, user
):
    """The consent page, whose answers redirect to the client, lets forms reach its origin."""
    rp = make_client()
    page = signed_in_browser(app).get(authorize_url(rp, pkce_pair()[1]))
    assert page.status_code == 200 and b'action="/authorize/consent"' in page.data
    assert form_action(page) == ["'self'", CLIENT_ORIGIN]


def test_ISSUE7_01_sign_in_page_resuming_a_request_allows_the_client_origin_only_then(
    make_client, user, client
):
    """A sign-in page whose next resumes an authorization request allows the client's origin
    in form-action, also when the form is shown again; a plain sign-in page has only 'self'."""
    rp = make_client()
    response = client.get(authorize_url(rp, pkce_pair()[1]))
    assert response.status_code == 302
    location = response.headers["Location"]
    next_value = callback_params(location)["next"]
    assert location.startswith("/sign-in?") and next_value.startswith("/authorize/resume/")
    page = client.get(location)
    assert page.status_code == 200
    assert form_action(page) == ["'self'", CLIENT_ORIGIN]
    wrong = client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_token(page.data),
            "email": "alice@example.org",
            "password": "not the password",
            "next": next_value,
        },
    )
    assert wrong.status_code == 200
    assert form_action(wrong) == ["'self'", CLIENT_ORIGIN]
    assert form_action(client.get("/sign-in")) == ["'self'"]
    assert form_action(client.get("/sign-in?next=/account")) == ["'self'"]


# 2. ID tokens of CLI clients ----------------------------------------------------------------


@pytest.fixture
def cli(app, monkeypatch) -> Any:
    """Run `identity ...` in-process against the test app's database and secret key."""
    from identity.cli import cli as command
    from identity.cli import oauth_commands as _  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())

    def run(*args: str) -> Any:
        result = CliRunner().invoke(command, list(args))
        assert result.exit_code == 0, result.output
        return result

    return run


def test_ISSUE7_02_cli_clients_get_rs256_id_tokens_by_default(app, keys, cli, user, client):
    """`identity clients create` without --id-token-alg registers RS256, and the ID token is
    signed so, although the server's own default algorithm is ES256."""
    from identity.extensions import db
    from identity.models.oauth import Client

    assert app.extensions["identity"].settings.signing_alg == "ES256"
    args = ["--name", "CLI app", "--redirect-uri", REDIRECT_URI, "--first-party", "--json"]
    output = cli("clients", "create", *args).output
    created = json.loads(output.strip().splitlines()[-1])
    with app.app_context():
        row = db.session.scalars(select(Client).filter_by(client_id=created["client_id"])).one()
        assert row.meta["id_token_signed_response_alg"] == "RS256"
    rp = RegisteredClient(created["client_id"], created["client_secret"], REDIRECT_URI)
    body = ModeFlow(client, "query").tokens(rp)
    assert unverified(body["id_token"])[0]["alg"] == "RS256"
    assert verify_with_jwks(client, body["id_token"])["aud"] == rp.client_id


# 3. Discovery --------------------------------------------------------------------------------

SERVED_CLAIMS = {
    # What ID tokens carry besides user claims (OIDC Core 2, 3.1.3.6).
    "sub",
    "iss",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "at_hash",
    "sid",
    # The user claims the server holds.
    "name",
    "preferred_username",
    "updated_at",
    "email",
    "email_verified",
    "roles",
    "permissions",  # an application's permissions the user holds (identity.rbac)
}


def test_ISSUE7_03_discovery_lists_only_claims_and_scopes_the_server_returns(client):
    """claims_supported is exactly what the server returns (no address, birthdate, picture...)
    and scopes_supported offers no address or phone."""
    meta = client.get("/.well-known/openid-configuration").json
    assert set(meta["claims_supported"]) == SERVED_CLAIMS
    for absent in ("address", "birthdate", "gender", "phone_number", "picture", "zoneinfo"):
        assert absent not in meta["claims_supported"]
    assert {"address", "phone"}.isdisjoint(meta["scopes_supported"])
    assert {"openid", "profile", "email"} <= set(meta["scopes_supported"])


def test_ISSUE7_03_a_ps256_client_assertion_is_accepted(app, make_client, client):
    """private_key_jwt signed with PS256, which discovery advertises, authenticates."""
    meta = client.get("/.well-known/openid-configuration").json
    assert "PS256" in meta["token_endpoint_auth_signing_alg_values_supported"]
    key = RSAKey.generate_key(2048)
    public = dict(key.as_dict(private=False), kid=key.thumbprint(), alg="PS256", use="sig")
    rp = make_client(
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="roles",
        auth_method="private_key_jwt",
        jwks={"keys": [public]},
    )
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": issuer(app) + "/oauth/token",
        "jti": "ps256-" + str(now),
        "iat": now,
        "exp": now + 60,
    }
    assertion = jwt.encode(
        {"alg": "PS256", "kid": key.thumbprint()}, claims, key, algorithms=["PS256"]
    )
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["access_token"]


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks.json"])
def test_ISSUE7_03_discovery_and_jwks_stay_publicly_cacheable(keys, client, path):
    """Discovery and the JWKS say public, max-age=..., with no Pragma and no Vary: Cookie."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    assert response.cache_control.max_age > 0
    assert "Pragma" not in response.headers
    assert "cookie" not in response.headers.get("Vary", "").lower()


# 4. The claims parameter --------------------------------------------------------------------

CLAIMS_REQUEST = json.dumps(
    {"userinfo": {"email": None, "name": None}, "id_token": {"email": None}}
)


def test_ISSUE7_04_claims_request_cannot_reach_outside_the_client_scopes(
    app, make_client, user, client
):
    """A client registered for openid only gets neither email nor name by asking for them in
    claims, even first-party; a client registered for email does get the email so."""
    browser = signed_in_browser(app)
    flow = ModeFlow(browser, "query")
    narrow = make_client(first_party=True, scope="openid")
    body = flow.tokens(narrow, scope="openid", claims=CLAIMS_REQUEST)
    id_token = unverified(body["id_token"])[1]
    info = client.get("/userinfo", headers=bearer(body["access_token"])).json
    assert {"email", "email_verified", "name"}.isdisjoint(id_token)
    assert set(info) == {"sub"}

    allowed = make_client(first_party=True, scope="openid email")
    body = flow.tokens(allowed, scope="openid", claims=CLAIMS_REQUEST)
    assert unverified(body["id_token"])[1]["email"] == "alice@example.org"
    info = client.get("/userinfo", headers=bearer(body["access_token"])).json
    assert info["email"] == "alice@example.org"
    assert "name" not in info


def test_ISSUE7_04_consent_does_not_ask_for_claims_outside_the_client_scopes(
    app, make_client, user
):
    """The consent page of an openid-only client asking for email lists no email, and the
    tokens after consent carry none."""
    rp = make_client(scope="openid")
    browser = signed_in_browser(app)
    page = browser.get(authorize_url(rp, pkce_pair()[1], scope="openid", claims=CLAIMS_REQUEST))
    assert page.status_code == 200
    assert b"See your email" not in page.data and b"See your name" not in page.data
    body = ModeFlow(browser, "query").tokens(rp, scope="openid", claims=CLAIMS_REQUEST)
    assert "email" not in unverified(body["id_token"])[1]
    info = browser.get("/userinfo", headers=bearer(body["access_token"])).json
    assert set(info) == {"sub"}


# 5. What /authorize stores ------------------------------------------------------------------


def test_ISSUE7_05_authorize_stores_only_known_parameters(app, make_client, client):
    """An anonymous request with 20 unknown 4000-character parameters is kept for sign-in
    without any of them."""
    rp = make_client()
    junk = {f"junk{n}": "x" * 4000 for n in range(20)}
    response = client.get(authorize_url(rp, pkce_pair()[1], **junk))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?")
    rows = pending_rows(app)
    assert len(rows) == 1
    assert not set(junk) & set(rows[0])
    assert rows[0]["client_id"] == rp.client_id
    assert sum(len(k) + len(v) for k, v in rows[0].items()) < 1000


def test_ISSUE7_05_authorize_refuses_known_parameters_over_8192_characters(
    app, make_client, client
):
    """Known parameters of more than 8192 characters in all, each within its own limit, are
    refused with an error page and nothing is stored."""
    rp = make_client()
    big = {"state": "s" * 4000, "nonce": "n" * 4000, "login_hint": "h" * 400}
    response = client.get(authorize_url(rp, pkce_pair()[1], **big))
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert pending_rows(app) == []


# 6. No 500 for bad input --------------------------------------------------------------------


def test_ISSUE7_06_deeply_nested_claims_at_authorize_is_invalid_request(app, make_client, user):
    """A claims parameter nested thousands of levels deep is an invalid_request redirect."""
    rp = make_client(first_party=True)
    response = signed_in_browser(app).get(authorize_url(rp, pkce_pair()[1], claims=DEEP_CLAIMS))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    params = callback_params(response.headers["Location"])
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_ISSUE7_06_deeply_nested_claims_at_par_is_invalid_request(make_client, client):
    """A claims parameter nested thousands of levels deep is a JSON 400 invalid_request at
    the pushed authorization endpoint."""
    rp = make_client()
    _, challenge = pkce_pair()
    data = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "claims": DEEP_CLAIMS,
    }
    response = client.post("/oauth/par", data=data, headers=rp.basic_auth())
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "request_uri" not in response.json


NUL_REQUESTS = {
    "authorize": ("GET", "/authorize", "html"),
    "logout": ("GET", "/logout", "html"),
    "token": ("POST", "/oauth/token", "json"),
    "par": ("POST", "/oauth/par", "json"),
    "device_authorization": ("POST", "/oauth/device_authorization", "json"),
    "revoke": ("POST", "/oauth/revoke", "json"),
}


@pytest.mark.parametrize("endpoint", list(NUL_REQUESTS))
def test_ISSUE7_06_a_nul_in_client_id_is_a_400(make_client, client, endpoint):
    """client_id=a%00b answers 400 (a page or JSON invalid_request as fits the endpoint),
    never a 500 from the database refusing the NUL."""
    rp = make_client(grant_types=["authorization_code", "client_credentials"])
    method, path, kind = NUL_REQUESTS[endpoint]
    params = {"client_id": "a\x00b"}
    if endpoint == "authorize":
        params.update(response_type="code", redirect_uri=rp.redirect_uri, scope="openid")
    elif endpoint == "token":
        params.update(grant_type="client_credentials")
    elif endpoint == "revoke":
        params.update(token="x" * 43)
    if method == "GET":
        response = client.get(path + "?" + urlencode(params))
    else:
        response = client.post(path, data=params)
    assert response.status_code == 400, (response.status_code, response.data[:300])
    if kind == "json":
        assert response.json["error"] == "invalid_request"
    else:
        assert response.mimetype == "text/html"
        assert "Location" not in response.headers


def register(client, body: bytes) -> Any:
    return client.post(
        "/oauth/register",
        data=body,
        headers={"Authorization": f"Bearer {DCR_TOKEN}", "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"client_name": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep_json"),
        pytest.param(
            b'{"client_name": "Nul", "redirect_uris": ["https://rp.example.org/cb"], '
            b'"scope": "openid", "software_id": "a\\u0000b"}',
            id="nul_in_a_string",
        ),
    ],
)
def test_ISSUE7_06_bad_json_at_registration_is_invalid_client_metadata(
    app_factory, monkeypatch, body
):
    """Deeply nested JSON, or a NUL inside a JSON string, at dynamic registration answers 400
    invalid_client_metadata and registers nothing."""
    from identity.extensions import db
    from identity.models.oauth import Client

    server = app_factory(dcr_initial_access_token=DCR_TOKEN)
    install_keys(server, monkeypatch)
    response = register(server.test_client(), body)
    assert response.status_code == 400, (response.status_code, response.data[:300])
    assert response.json["error"] == "invalid_client_metadata"
    with server.app_context():
        assert db.session.scalars(select(Client)).all() == []


@pytest.mark.parametrize("field", ["email", "password"])
def test_ISSUE7_06_a_nul_in_a_sign_in_field_is_a_400(app, user, client, field):
    """A NUL in a sign-in form field answers 400 and signs nobody in."""
    data = {"email": "alice@example.org", "password": PASSWORD}
    data[field] += "\x00"
    page = client.get("/sign-in")
    response = client.post("/sign-in", data={"csrf_token": csrf_token(page.data), **data})
    assert response.status_code == 400
    assert cookie_value(client, "identity_session") is None
    assert b"NUL" in response.data
    assert sign_in(client).status_code == 303  # the right password still works


# 7. A refused token request spends nothing --------------------------------------------------


def test_ISSUE7_07_a_wrong_code_verifier_does_not_spend_the_code(app, make_client, user, client):
    """A wrong code_verifier is invalid_grant; the right one then redeems the code, once."""
    rp = make_client(first_party=True)
    response, verifier = ModeFlow(signed_in_browser(app), "query").start(rp)
    code = callback_params(response.headers["Location"])["code"]
    wrong = redeem(client, rp, code, pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"
    right = redeem(client, rp, code, verifier)
    assert right.status_code == 200, right.json
    again = redeem(client, rp, code, verifier)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"


def test_ISSUE7_07_a_refresh_beyond_the_grant_does_not_spend_the_refresh_token(
    app, make_client, user, client
):
    """A refresh asking for more scope than granted is invalid_scope; the same refresh token
    then still refreshes, and the family's access token stays active."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    body = ModeFlow(browser, "query").tokens(rp, scope="openid email offline_access")
    beyond = refresh(client, rp, body["refresh_token"], scope="openid email profile")
    assert beyond.status_code == 400 and beyond.json["error"] == "invalid_scope"
    assert client.get("/userinfo", headers=bearer(body["access_token"])).status_code == 200
    again = refresh(client, rp, body["refresh_token"])
    assert again.status_code == 200, again.json
    introspection = client.post(
        "/oauth/introspect", data={"token": body["access_token"]}, headers=rp.basic_auth()
    ).json
    assert introspection["active"] is True
    assert client.get("/userinfo", headers=bearer(again.json["access_token"])).status_code == 200


def test_ISSUE7_15_cli_registers_request_uris_and_keys_for_request_objects(
    app, keys, cli, tmp_path
):
    """`identity clients create --request-uri URL --jwks FILE` registers what request objects
    by reference need, for any authentication method."""
    from joserfc.jwk import ECKey

    from identity.extensions import db
    from identity.models.oauth import Client

    jwks = str(tmp_path / "rp-jwks.json")
    key = ECKey.generate_key("P-256", {"kid": "k1"})
    with open(jwks, "w") as file:
        json.dump({"keys": [key.as_dict(private=False)]}, file)
    args = ["--name", "RP", "--redirect-uri", REDIRECT_URI, "--jwks", jwks, "--json"]
    output = cli("clients", "create", *args, "--request-uri", "https://rp.example.org/r.jwt")
    created = json.loads(output.output.strip().splitlines()[-1])
    assert "client_secret" in created
    with app.app_context():
        row = db.session.scalars(select(Client).filter_by(client_id=created["client_id"])).one()
        assert row.meta["request_uris"] == ["https://rp.example.org/r.jwt"]
        assert row.meta["jwks"]["keys"][0]["kid"] == "k1"
