"""RFC 9700 section 2.5: client authentication at the token, introspection, revocation, PAR
and device endpoints; secrets and private_key_jwt assertions (BCP-34 .. BCP-36)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.oauth.bcp_support import install_keys, issuer
from tests.oauth.conftest import RegisteredClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DCR_TOKEN = "initial-access-token-" + "z" * 32

# Each endpoint that authenticates clients, with a body that is otherwise valid.
ENDPOINTS = {
    "token": ("/oauth/token", {"grant_type": "client_credentials"}),
    "introspect": ("/oauth/introspect", {"token": "x" * 43}),
    "revoke": ("/oauth/revoke", {"token": "x" * 43}),
    "par": (
        "/oauth/par",
        {
            "response_type": "code",
            "redirect_uri": "https://rp.example.org/cb",
            "scope": "openid",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
    ),
    "device": ("/oauth/device_authorization", {"scope": "openid"}),
}
GRANTS = [
    "authorization_code",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
]


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


@pytest.fixture
def confidential(make_client):
    return make_client(grant_types=GRANTS, scope="openid profile roles")


def expected_status(endpoint: str, response) -> None:
    assert response.status_code == 401, (endpoint, response.status_code, response.json)
    assert response.json["error"] == "invalid_client"
    assert "access_token" not in response.json
    assert "request_uri" not in response.json
    assert "device_code" not in response.json
    assert "active" not in response.json


# BCP-34 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_BCP_34_control_valid_secret_is_accepted(confidential, client, endpoint):
    """The control case: the right secret in the Authorization header works everywhere."""
    path, data = ENDPOINTS[endpoint]
    response = client.post(path, data=data, headers=confidential.basic_auth())
    assert response.status_code in (200, 201), response.json


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    "how", ["none", "client_id_only", "wrong_secret", "empty_secret", "other_clients_secret"]
)
def test_BCP_34_missing_or_wrong_secrets_are_invalid_client(
    confidential, make_client, client, endpoint, how
):
    """No secret, a wrong one, or another client's is 401 invalid_client on every endpoint."""
    path, data = ENDPOINTS[endpoint]
    other = make_client()
    headers = {}
    if how == "client_id_only":
        data = {**data, "client_id": confidential.client_id}
    elif how == "wrong_secret":
        headers = RegisteredClient(confidential.client_id, "wrong", "").basic_auth()
    elif how == "empty_secret":
        headers = RegisteredClient(confidential.client_id, "", "").basic_auth()
    elif how == "other_clients_secret":
        headers = RegisteredClient(confidential.client_id, other.client_secret, "").basic_auth()
    expected_status(endpoint, client.post(path, data=data, headers=headers))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("where", ["query_only", "query_and_header"])
def test_BCP_34_secrets_in_the_url_are_refused(confidential, client, endpoint, where):
    """Credentials in the query string are refused, even when the header is right too."""
    path, data = ENDPOINTS[endpoint]
    url = (
        path
        + "?"
        + urlencode(
            {"client_id": confidential.client_id, "client_secret": confidential.client_secret}
        )
    )
    headers = confidential.basic_auth() if where == "query_and_header" else {}
    response = client.post(url, data=data, headers=headers)
    assert response.status_code in (400, 401), response.json
    assert response.json["error"] in ("invalid_request", "invalid_client")
    assert "access_token" not in response.json and "active" not in response.json


def set_secret_expiry(app, client_id, when) -> None:
    from identity.extensions import db
    from identity.models.oauth import Client

    with app.app_context():
        row = db.session.query(Client).filter_by(client_id=client_id).one()
        row.client_secret_expires_at = when
        db.session.commit()
        app.extensions["identity"].clients.invalidate(client_id)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_BCP_34_expired_secrets_are_refused(app, confidential, client, endpoint):
    """A secret past client_secret_expires_at is invalid_client everywhere."""
    from identity.models.base import utcnow

    set_secret_expiry(app, confidential.client_id, utcnow() - timedelta(seconds=1))
    path, data = ENDPOINTS[endpoint]
    expected_status(endpoint, client.post(path, data=data, headers=confidential.basic_auth()))


def test_BCP_34_a_secret_stops_working_when_it_expires(app, confidential, client):
    """A secret that expires later works until then, even with the client lookup cached."""
    from identity.models.base import utcnow

    set_secret_expiry(app, confidential.client_id, utcnow() + timedelta(seconds=60))
    path, data = ENDPOINTS["token"]
    assert client.post(path, data=data, headers=confidential.basic_auth()).status_code == 200
    with time_machine.travel(time.time() + 61, tick=True):
        expected_status("token", client.post(path, data=data, headers=confidential.basic_auth()))


def test_BCP_34_registered_method_is_enforced(make_client, client):
    """A client registered for client_secret_basic cannot switch to client_secret_post."""
    rp = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": rp.client_id,
            "client_secret": rp.client_secret,
        },
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_BCP_34_public_clients_cannot_introspect(make_client, client):
    """Introspection needs real client authentication: a public client_id is not enough."""
    public = make_client(auth_method="none")
    response = client.post(
        "/oauth/introspect", data={"token": "x" * 43, "client_id": public.client_id}
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


# BCP-35 ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


@pytest.fixture(params=["ES256", "RS256"])
def jwt_client(request, make_client):
    """A private_key_jwt client registered with an inline JWK Set, and its private key."""
    key = ECKey.generate_key("P-256") if request.param == "ES256" else RSAKey.generate_key(2048)
    kid = key.thumbprint()
    public = dict(key.as_dict(private=False), kid=kid, alg=request.param, use="sig")
    rp = make_client(
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="roles",
        auth_method="private_key_jwt",
        jwks={"keys": [public]},
    )
    return rp, key, request.param


def assertion(app, rp, key, alg, *, header=None, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": issuer(app) + "/oauth/token",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.thumbprint(), **(header or {})}, claims, key)


def with_assertion(client, value, path="/oauth/token", **data):
    body = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": value,
        **data,
    }
    if path != "/oauth/token":
        body.pop("grant_type")
    return client.post(path, data=body)


def refused(response) -> None:
    assert response.status_code in (400, 401), response.json
    assert response.json["error"] == "invalid_client"
    assert "access_token" not in response.json


def test_BCP_35_control_a_fresh_assertion_is_accepted(app, jwt_client, client):
    """The control case: a well-formed assertion authenticates the client."""
    rp, key, alg = jwt_client
    response = with_assertion(client, assertion(app, rp, key, alg))
    assert response.status_code == 200, response.json


def test_BCP_35_a_replayed_assertion_is_refused(app, jwt_client, client):
    """The same assertion (same jti) works once only."""
    rp, key, alg = jwt_client
    value = assertion(app, rp, key, alg)
    assert with_assertion(client, value).status_code == 200
    refused(with_assertion(client, value))


def test_BCP_35_a_replay_at_another_endpoint_is_refused(app, jwt_client, client):
    """A jti used at the token endpoint cannot be used again at introspection."""
    rp, key, alg = jwt_client
    value = assertion(app, rp, key, alg, aud=issuer(app))
    assert with_assertion(client, value).status_code == 200
    refused(with_assertion(client, value, "/oauth/introspect", token="x" * 43))


def test_BCP_35_a_new_jti_with_the_same_claims_is_fine(app, jwt_client, client):
    """Replay protection keys on the jti: a fresh assertion works after a used one."""
    rp, key, alg = jwt_client
    assert with_assertion(client, assertion(app, rp, key, alg)).status_code == 200
    assert with_assertion(client, assertion(app, rp, key, alg)).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://evil.test/oauth/token"},
        {"aud": "http://127.0.0.1:8000/userinfo"},
        {"aud": "http://127.0.0.1:8000/oauth/token/"},
        {"aud": None},
        {"exp": int(time.time()) + 365 * 86400},
        {"exp": int(time.time()) + 3600},
        {"exp": int(time.time()) - 300},
        {"exp": None},
        {"jti": None},
        {"jti": ""},
        {"iss": "someone-else"},
        {"sub": "someone-else"},
        {"iss": None},
    ],
    ids=[
        "foreign-aud",
        "userinfo-aud",
        "trailing-slash-aud",
        "no-aud",
        "exp-a-year-ahead",
        "exp-an-hour-ahead",
        "expired",
        "no-exp",
        "no-jti",
        "empty-jti",
        "iss-mismatch",
        "sub-mismatch",
        "no-iss",
    ],
)
def test_BCP_35_malformed_assertions_are_refused(app, jwt_client, client, overrides):
    """Wrong audience, long or missing expiry, missing jti, or iss/sub not the client fail."""
    rp, key, alg = jwt_client
    refused(with_assertion(client, assertion(app, rp, key, alg, **overrides)))


def test_BCP_35_alg_none_is_refused(app, jwt_client, client):
    """An unsigned assertion (alg none) never authenticates."""
    rp, key, _alg = jwt_client
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": issuer(app) + "/oauth/token",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
    }
    for header in ({"alg": "none"}, {"alg": "none", "kid": key.thumbprint()}, {"alg": "None"}):
        refused(with_assertion(client, unsigned(header, claims) + "."))


@pytest.mark.parametrize("encoding", ["pem", "jwk-json", "der-b64"])
def test_BCP_35_hs256_keyed_with_the_public_key_is_refused(app, jwt_client, client, encoding):
    """Algorithm confusion: an HMAC over the client's *public* key is not a signature."""
    rp, key, _alg = jwt_client
    public = key.as_dict(private=False)
    secret = {
        "pem": key.as_pem(private=False),
        "jwk-json": json.dumps(public).encode(),
        "der-b64": key.as_der(private=False),
    }[encoding]
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": issuer(app) + "/oauth/token",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
    }
    for header in ({"alg": "HS256", "kid": key.thumbprint()}, {"alg": "HS256"}):
        signing_input = unsigned(header, claims)
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused(with_assertion(client, f"{signing_input}.{b64(mac)}"))


def test_BCP_35_a_key_the_client_did_not_register_is_refused(app, jwt_client, client):
    """An assertion signed by another key (even with the registered kid) fails."""
    rp, key, alg = jwt_client
    other = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(2048)
    value = assertion(app, rp, other, alg, header={"kid": key.thumbprint()})
    refused(with_assertion(client, value))
    refused(with_assertion(client, assertion(app, rp, other, alg)))


def test_BCP_35_keys_in_the_header_are_not_trusted(app, jwt_client, client):
    """A jwk embedded in the assertion header is ignored: only registered keys count."""
    rp, _key, alg = jwt_client
    attacker = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(2048)
    embedded = dict(attacker.as_dict(private=False))
    value = assertion(app, rp, attacker, alg, header={"jwk": embedded, "kid": "attacker"})
    refused(with_assertion(client, value))


def test_BCP_35_a_secret_client_cannot_use_an_assertion(app, make_client, client):
    """A client registered for client_secret_basic cannot switch to private_key_jwt."""
    rp = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    key = ECKey.generate_key("P-256")
    refused(with_assertion(client, assertion(app, rp, key, "ES256")))


# BCP-36 (P2) ----------------------------------------------------------------------------


def test_BCP_36_registration_cannot_choose_a_client_id_that_looks_like_a_user(
    app_factory, monkeypatch, user
):
    """client_id is assigned by the server, never taken from the request, and client tokens
    are told apart from user tokens by their sub and client_id."""
    server = app_factory(dcr_initial_access_token=DCR_TOKEN)
    install_keys(server, monkeypatch)
    response = server.test_client().post(
        "/oauth/register",
        json={
            "client_name": "alice@example.org",
            "client_id": str(user),
            "grant_types": ["client_credentials"],
            "scope": "roles",
        },
        headers={"Authorization": f"Bearer {DCR_TOKEN}"},
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["client_id"] != str(user)
    rp = RegisteredClient(body["client_id"], body["client_secret"], "")
    api = server.test_client()
    token = api.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=rp.basic_auth()
    ).json["access_token"]
    info = api.post("/oauth/introspect", data={"token": token}, headers=rp.basic_auth()).json
    assert info["sub"] == info["client_id"] == rp.client_id
    assert api.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code in (
        401,
        403,
    )
