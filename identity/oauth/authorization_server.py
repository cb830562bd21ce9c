"""The Authlib authorization server: how it finds clients and answers, and the endpoints'
public URLs. The composition root (identity.factory.setup_oauth) registers its grants,
endpoints and client authentication methods."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Request
from flask import Response, current_app
from flask import request as flask_request

from identity.errors import NO_STORE
from identity.extensions import lazy_session
from identity.runtime import runtime


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
    def query_client(self, client_id: str | None) -> Any:
        return runtime().clients.get(lazy_session(), client_id)  # mostly from the cache

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            if str(error.description).startswith("The client cannot authenticate with"):
                # Authlib's text lists every method in Python syntax; say instead what this
                # client is registered for.
                error.description = auth_failure_description(
                    self.query_client(_named_client_id(request)), methods
                )
            raise

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


def _named_client_id(request: Any) -> str:
    """The client a request names, by HTTP Basic or the form's client_id."""
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
        return unquote(decoded.partition(":")[0])
    return str(request.form.get("client_id") or "")


def auth_failure_description(client: Any, methods: list[str]) -> str:
    if client is None:
        offered = ", ".join(m for m in methods if m != "none")
        return f"Client authentication failed. Authenticate the client with {offered}."
    accepted = [m for m in client.accepted_auth_methods if m in methods]
    if not accepted:
        return "This client may not use this endpoint."
    if accepted == ["none"]:
        return "This public client must send its client_id and no secret."
    return (
        "Client authentication failed: the credentials are missing or wrong. This client is "
        f"registered for {' or '.join(accepted)}."
    )


def server() -> OAuthServer:
    return current_app.extensions["identity.oauth"]  # type: ignore[no-any-return]
