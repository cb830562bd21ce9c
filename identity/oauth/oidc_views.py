"""OpenID Connect endpoints: discovery, JWKS, UserInfo and RP-initiated logout."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from identity.auth.methods import ACRS
from identity.errors import NO_STORE, json_error, machine_facing
from identity.extensions import csrf, lazy_session
from identity.oauth.authorization_server import endpoint_urls
from identity.oauth.clients.authentication import ASSERTION_ALGORITHMS, REQUEST_OBJECT_ALGORITHMS
from identity.oauth.clients.metadata import AUTH_METHODS, GRANT_TYPES
from identity.oauth.scopes import CLAIMS_SUPPORTED, KNOWN_SCOPES, released_claims
from identity.rbac.access import serves
from identity.runtime import runtime

bp = serves(
    machine_facing(Blueprint("oidc", __name__)),
    "protocol",
    "discovery and JWKS are public; UserInfo answers only about the token's own user",
)


def _public_json(body: dict[str, Any], max_age: int) -> Response:
    response = jsonify(body)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def metadata() -> dict[str, Any]:
    """RFC 8414 / OpenID Connect Discovery 1.0 metadata; every value matches behaviour."""
    settings = runtime().settings
    urls = endpoint_urls(settings.issuer)
    if settings.dcr_initial_access_token is None:
        urls.pop("registration_endpoint")
    ring = runtime().keys.ring(lazy_session())
    signing_algs = sorted(ring.signing) or ["RS256"]
    client_assertion_algs = list(ASSERTION_ALGORITHMS)
    return {
        "issuer": settings.issuer,
        **urls,
        "scopes_supported": sorted(KNOWN_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing_algs,
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": client_assertion_algs,
        "introspection_endpoint_auth_methods_supported": [m for m in AUTH_METHODS if m != "none"],
        "introspection_endpoint_auth_signing_alg_values_supported": client_assertion_algs,
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": client_assertion_algs,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": CLAIMS_SUPPORTED,
        "claims_parameter_supported": True,
        "claim_types_supported": ["normal"],
        # RFC 9101 request objects, signed by the client's registered keys; by reference
        # only from the https URLs the client registered in request_uris.
        "request_parameter_supported": True,
        "request_uri_parameter_supported": True,
        "require_request_uri_registration": True,
        "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGORITHMS),
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": list(ACRS),
        "display_values_supported": ["page", "popup", "touch"],
        "ui_locales_supported": ["en"],
        "claims_locales_supported": ["en"],
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "access_token_signing_alg_values_supported": [settings.signing_alg],
    }


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> ResponseReturnValue:
    return _public_json(metadata(), 300)


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server() -> ResponseReturnValue:
    return _public_json(metadata(), 300)


@bp.get("/jwks.json")
def jwks() -> ResponseReturnValue:
    """Public keys only (CRYPTO-04), including keys about to sign and keys whose tokens
    have not expired yet."""
    return _public_json(runtime().keys.ring(lazy_session()).jwks, 60)


# UserInfo -------------------------------------------------------------------------------


def _bearer_error(status: int, error: str, description: str) -> Response:
    """RFC 6750 section 3: the error with its WWW-Authenticate challenge."""
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return json_error(
        status,
        error,
        description,
        [("WWW-Authenticate", challenge), ("Access-Control-Allow-Origin", "*")],
    )


def bearer_token() -> str | None:
    """RFC 6750: the Authorization header, or a form body field; never the URL query."""
    header = request.headers.get("Authorization", "")
    body_token = request.form.get("access_token") if request.method == "POST" else None
    if header and body_token:
        return ""
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return body_token


@bp.route("/userinfo", methods=["GET", "POST", "OPTIONS"])
@csrf.exempt
def userinfo() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Authorization"
        return response
    if "access_token" in request.args:
        return _bearer_error(
            400, "invalid_request", "Send the access token in the Authorization header."
        )
    token = bearer_token()
    if token is None:
        response = _bearer_error(401, "invalid_token", "An access token is required.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="userinfo"'
        return response
    # Both usually answer from memory (identity.revocation_state, identity.oauth.profiles):
    # a session is opened only if one reads the database.
    rt = runtime()
    claims = rt.tokens.verify_access_token(lazy_session(), token)
    if claims is None:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        return _bearer_error(403, "insufficient_scope", "The access token lacks the openid scope.")
    user_id = _uuid(claims.get("sub"))
    user = rt.profiles.get(lazy_session(), user_id) if user_id is not None else None
    if user is None:  # gone, or disabled since the check (or a client's own token)
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    # OIDC Core 5.5: individually requested claims, as the access token records them.
    requested = claims.get("userinfo_claims")
    client = rt.clients.get(lazy_session(), str(claims.get("client_id", "")))
    if client is None:  # deleted since verify_access_token looked
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    access = rt.tokens.subject_access(lazy_session(), "user", user.id, client)
    response = jsonify(
        released_claims(
            user,
            scopes,
            dict.fromkeys(requested) if isinstance(requested, list) else None,
            client.scopes,
            access,
        )
    )
    response.headers.update(NO_STORE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _uuid(value: Any) -> Any:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
