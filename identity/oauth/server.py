"""Authlib wiring: the authorization server, its grants, endpoints and client auth."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from flask import Flask, Response, current_app
from flask import request as flask_request

from identity.extensions import db
from identity.oauth import device, endpoints, grants
from identity.oauth.client_auth import JwksCache, PrivateKeyJWT
from identity.runtime import runtime
from identity.settings import Settings

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def endpoint_urls(issuer: str) -> dict[str, str]:
    """Every endpoint's public URL, built from the issuer (never from the Host header)."""
    return {
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "pushed_authorization_request_endpoint": f"{issuer}/oauth/par",
        "device_authorization_endpoint": f"{issuer}/oauth/device_authorization",
        "end_session_endpoint": f"{issuer}/logout",
        "registration_endpoint": f"{issuer}/oauth/register",
    }


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    def query_client(self, client_id: str) -> Any:
        return runtime().clients.get(db.session, client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Tokens are stored (or not) by the grants themselves."""

    def validate_requested_scope(self, scope: str | None) -> None:
        """Unknown scopes are ignored, not errors (OIDC Core 3.1.2.1); each client's
        ``get_allowed_scope`` keeps only the scopes it may have (BCP-32)."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        # The request object itself, not Flask's proxy: Authlib reads request.values and
        # the headers through it about ten times per request, each a context-var lookup.
        return FlaskOAuth2Request(flask_request._get_current_object())  # type: ignore[attr-defined]

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        response: Response = super().handle_response(status_code, payload, headers)
        # RFC 6749 5.1: token responses (and every other JSON answer here) are not cached.
        for name, value in NO_STORE.items():
            response.headers[name] = value
        return response


def server() -> OAuthServer:
    return current_app.extensions["identity.oauth"]  # type: ignore[no-any-return]


def build_server(app: Flask, settings: Settings) -> OAuthServer:
    authorization = OAuthServer()
    authorization.init_app(app)
    urls = endpoint_urls(settings.issuer)
    audiences = [
        settings.issuer,
        urls["token_endpoint"],
        urls["introspection_endpoint"],
        urls["revocation_endpoint"],
        urls["pushed_authorization_request_endpoint"],
        urls["device_authorization_endpoint"],
    ]
    authorization.register_client_auth_method(
        "private_key_jwt",
        PrivateKeyJWT(audiences, JwksCache(allow_private=settings.allow_private_jwks_uri)),
    )
    authorization.register_grant(
        grants.AuthorizationCodeGrant, [grants.S256CodeChallenge(required=True)]
    )
    authorization.register_grant(grants.RefreshTokenGrant)
    authorization.register_grant(grants.ClientCredentialsGrant)
    authorization.register_grant(device.DeviceCodeGrant)
    authorization.register_endpoint(endpoints.IntrospectionEndpoint)
    authorization.register_endpoint(endpoints.RevocationEndpoint)
    authorization.register_endpoint(endpoints.DeviceAuthorizationEndpoint)
    app.extensions["identity.oauth"] = authorization
    return authorization
