"""RFC 9700 sections 2.1.2 and 2.4: no implicit, hybrid or password grants, and each client
uses only the grants it was registered for (BCP-21 .. BCP-23)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.oauth.bcp_support import (
    codes_minted,
    install_keys,
    issuer,
    query,
    redeem,
    signed_in_browser,
    tokens_for,
)
from tests.oauth.conftest import REDIRECT_URI, pkce_pair, token_request

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DCR_TOKEN = "initial-access-token-" + "y" * 32


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


def metadata(client) -> dict:
    return client.get("/.well-known/openid-configuration").json


# BCP-21 ---------------------------------------------------------------------------------

IMPLICIT_OR_HYBRID = [
    "token",
    "id_token",
    "id_token token",
    "code token",
    "code id_token",
    "code id_token token",
    "token code",
    "none",
    "code code",
    "CODE",
]


@pytest.mark.parametrize("response_type", IMPLICIT_OR_HYBRID)
def test_BCP_21_implicit_and_hybrid_response_types_are_refused(
    app, make_client, user, response_type
):
    """Only response_type=code exists: anything else is unsupported_response_type."""
    rp = make_client(first_party=True)
    _, challenge = pkce_pair()
    params = {
        "response_type": response_type,
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = signed_in_browser(app).get("/authorize?" + urlencode(params))
    assert response.status_code == 302, response.data
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert "#" not in location
    callback = query(location)
    assert callback["error"] == ["unsupported_response_type"]
    assert callback["state"] == ["s"] and callback["iss"] == [issuer(app)]
    assert not {"code", "access_token", "id_token", "token"} & callback.keys()
    assert codes_minted(app) == 0


def test_BCP_21_discovery_lists_only_the_code_response_type(client):
    """Discovery advertises response type code and no fragment-based response mode."""
    document = metadata(client)
    assert document["response_types_supported"] == ["code"]
    assert "fragment" not in document["response_modes_supported"]
    assert "implicit" not in document["grant_types_supported"]


@pytest.fixture
def dcr_app(app_factory, monkeypatch):
    app = app_factory(dcr_initial_access_token=DCR_TOKEN)
    install_keys(app, monkeypatch)
    return app


@pytest.mark.parametrize(
    "metadata_",
    [
        {"response_types": ["token"]},
        {"response_types": ["code", "id_token"]},
        {"response_types": ["code token"]},
        {"grant_types": ["implicit"]},
        {"grant_types": ["authorization_code", "password"]},
    ],
)
def test_BCP_21_22_clients_cannot_register_implicit_hybrid_or_password(dcr_app, metadata_):
    """Dynamic registration refuses the response types and grants the server refuses."""
    response = dcr_app.test_client().post(
        "/oauth/register",
        json={"client_name": "x", "redirect_uris": ["https://rp.test/cb"], **metadata_},
        headers={"Authorization": f"Bearer {DCR_TOKEN}"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client_metadata"


# BCP-22 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post", "none"])
def test_BCP_22_password_grant_is_refused_for_every_client(make_client, user, client, auth_method):
    """grant_type=password with valid user credentials never yields a token."""
    from tests.conftest import PASSWORD

    rp = make_client(
        auth_method=auth_method,
        grant_types=["authorization_code", "refresh_token"],
    )
    data = {
        "grant_type": "password",
        "username": "alice@example.org",
        "password": PASSWORD,
        "scope": "openid",
    }
    if auth_method == "client_secret_basic":
        response = client.post("/oauth/token", data=data, headers=rp.basic_auth())
    elif auth_method == "client_secret_post":
        data.update(client_id=rp.client_id, client_secret=rp.client_secret)
        response = client.post("/oauth/token", data=data)
    else:
        response = client.post("/oauth/token", data={**data, "client_id": rp.client_id})
    assert response.status_code == 400, response.json
    assert response.json["error"] in ("unsupported_grant_type", "unauthorized_client")
    assert "access_token" not in response.json


def test_BCP_22_discovery_does_not_advertise_the_password_grant(client):
    """grant_types_supported names no password or implicit grant."""
    grants = metadata(client)["grant_types_supported"]
    assert "password" not in grants and "implicit" not in grants
    assert "authorization_code" in grants


# BCP-23 ---------------------------------------------------------------------------------


@pytest.fixture
def code_only(make_client):
    return make_client(first_party=True, grant_types=["authorization_code"])


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "client_credentials", "scope": "roles"},
        {"grant_type": "refresh_token", "refresh_token": "x" * 43},
        {"grant_type": DEVICE_CODE, "device_code": "x" * 43},
    ],
    ids=["client_credentials", "refresh_token", "device_code"],
)
def test_BCP_23_unregistered_grants_are_unauthorized_client(code_only, client, data):
    """A client registered only for authorization_code is refused every other grant."""
    response = token_request(client, code_only, **data)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "unauthorized_client"
    assert "access_token" not in response.json


def test_BCP_23_unregistered_refresh_grant_refuses_even_a_real_refresh_token(
    app, make_client, user, client
):
    """A real refresh token does not help a client that lost the refresh_token grant."""
    from identity.extensions import db
    from identity.models.oauth import Client

    rp = make_client(first_party=True)
    tokens = tokens_for(signed_in_browser(app), rp)
    with app.app_context():
        row = db.session.query(Client).filter_by(client_id=rp.client_id).one()
        row.meta = {**row.meta, "grant_types": ["authorization_code"]}
        db.session.commit()
        app.extensions["identity"].clients.invalidate(rp.client_id)
    response = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert response.status_code == 400
    assert response.json["error"] == "unauthorized_client"


def test_BCP_23_device_authorization_needs_the_device_grant(code_only, client):
    """The device authorization endpoint refuses a client without the device grant."""
    response = client.post(
        "/oauth/device_authorization", data={"scope": "openid"}, headers=code_only.basic_auth()
    )
    assert response.status_code == 400
    assert response.json["error"] == "unauthorized_client"


def test_BCP_23_jwt_bearer_grant_is_not_supported(code_only, client):
    """The JWT bearer grant is not offered at all: unsupported_grant_type."""
    response = token_request(client, code_only, grant_type=JWT_BEARER, assertion="a.b.c")
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"
    assert JWT_BEARER not in metadata(client)["grant_types_supported"]


def test_BCP_23_service_client_cannot_use_the_code_grant(app, make_client, user, client):
    """A client_credentials-only client gets unauthorized_client for a (foreign) code."""
    rp = make_client(first_party=True)
    service = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    browser = signed_in_browser(app)
    from tests.oauth.bcp_support import code_for

    callback, verifier = code_for(browser, rp)
    response = redeem(client, service, callback["code"], verifier)
    assert response.status_code == 400
    assert response.json["error"] == "unauthorized_client"
    assert redeem(client, rp, callback["code"], verifier).status_code == 200


def test_BCP_23_service_client_cannot_start_an_authorization(app, make_client, user):
    """A client without the code grant (and so without redirect URIs) gets our error page."""
    service = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": service.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = signed_in_browser(app).get("/authorize?" + urlencode(params))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert codes_minted(app) == 0


def test_BCP_23_registered_grants_work(make_client, client):
    """The control case: a client registered for client_credentials gets a token."""
    service = make_client(grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    response = token_request(client, service, grant_type="client_credentials")
    assert response.status_code == 200, response.json
    assert "refresh_token" not in response.json
