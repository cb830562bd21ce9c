"""Regressions found by driving the server with third-party relying-party libraries
(tests/integration/test_rp_*.py), pinned here without a server process or Node.js."""

from __future__ import annotations

import json
from typing import Any

from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from flask.testing import FlaskClient
from joserfc.jwk import KeySet

from tests.oauth.conftest import RegisteredClient, token_request


def _claims(token: str) -> dict[str, Any]:
    from joserfc import jws

    return json.loads(jws.extract_compact(token.encode()).payload)  # type: ignore[no-any-return]


def _validate_as_resource_server(client: FlaskClient, token: str, audience: str) -> Any:
    """Authlib's RFC 9068 validator, as a resource server built on Authlib runs it."""
    issuer = _claims(token)["iss"]

    class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return KeySet.import_key_set(client.get("/jwks.json").json)

    validator = Validator(issuer=issuer, resource_server=audience)
    claims = validator.authenticate_token(token)
    validator.validate_token(claims, [], None)
    return claims


def _user_access_token(flow: Any, rp: RegisteredClient, client: FlaskClient) -> str:
    params, verifier = flow.authorize(rp)
    response = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.json
    return response.json["access_token"]  # type: ignore[no-any-return]


def test_access_token_of_a_user_without_roles_has_no_blank_roles_claim(
    flow: Any, rp: RegisteredClient, client: FlaskClient
) -> None:
    """A user without roles gets an access token without a "roles" claim, which Authlib's
    RFC 9068 validator accepts (it refused the former "roles": [])."""
    token = _user_access_token(flow, rp, client)
    assert "roles" not in _claims(token)
    assert _validate_as_resource_server(client, token, rp.client_id)["client_id"] == rp.client_id


def test_access_token_of_a_user_with_roles_names_them(
    make_user: Any, make_client: Any, client: FlaskClient
) -> None:
    """A user's roles are still in the access token when there are some."""
    from tests.oauth.conftest import Flow

    make_user(roles=("admin",))
    rp = make_client()
    token = _user_access_token(Flow(client), rp, client)
    assert _claims(token)["roles"] == ["admin"]
    assert _validate_as_resource_server(client, token, rp.client_id)["roles"] == ["admin"]


def test_client_credentials_token_without_roles_validates(
    make_client: Any, client: FlaskClient
) -> None:
    """A service account without roles gets a token with no "roles" claim that Authlib's
    RFC 9068 validator accepts."""
    service = make_client(
        "Service", redirect_uris=[], grant_types=["client_credentials"], scope="roles"
    )
    response = token_request(client, service, grant_type="client_credentials")
    assert response.status_code == 200, response.json
    token = response.json["access_token"]
    assert "roles" not in _claims(token)
    claims = _validate_as_resource_server(client, token, service.client_id)
    assert claims["sub"] == service.client_id
