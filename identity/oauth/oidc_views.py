"""OpenID Connect endpoints: discovery, JWKS, UserInfo and RP-initiated logout."""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri
from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy.orm import joinedload

from identity import audit
from identity.extensions import csrf, db
from identity.models.user import User
from identity.oauth.metadata import AUTH_METHODS, GRANT_TYPES
from identity.oauth.scopes import CLAIMS_SUPPORTED, KNOWN_SCOPES, released_claims
from identity.oauth.server import NO_STORE, endpoint_urls, server
from identity.runtime import runtime
from identity.sessions import ACR_ONE_FACTOR, current_user, sign_out

bp = Blueprint("oidc", __name__)


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
    ring = runtime().keys.ring(db.session)
    signing_algs = sorted(ring.signing) or ["RS256"]
    client_assertion_algs = [
        "ES256",
        "ES384",
        "ES512",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "EdDSA",
    ]
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
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": [ACR_ONE_FACTOR],
        "display_values_supported": ["page", "popup", "touch"],
        "ui_locales_supported": ["en"],
        "claims_locales_supported": ["en"],
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
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
    return _public_json(runtime().keys.ring(db.session).jwks, 60)


# UserInfo -------------------------------------------------------------------------------


def _bearer_error(status: int, error: str, description: str) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    challenge = f'Bearer error="{error}", error_description="{description}"'
    response.headers["WWW-Authenticate"] = challenge
    response.headers.update(NO_STORE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


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
    claims = runtime().tokens.verify_access_token(db.session, token) if token else None
    if claims is None:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        return _bearer_error(403, "insufficient_scope", "The access token lacks the openid scope.")
    # The user and their roles in one query, not the two of the relationship's selectin.
    user = db.session.get(User, _uuid(claims.get("sub")), options=[joinedload(User.roles)])
    if user is None or not user.is_active:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    # OIDC Core 5.5: individually requested claims, as the access token records them.
    requested = claims.get("userinfo_claims")
    response = jsonify(
        released_claims(
            user, scopes, dict.fromkeys(requested) if isinstance(requested, list) else None
        )
    )
    response.headers.update(NO_STORE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _uuid(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# RP-initiated logout 1.0 --------------------------------------------------------------


class LogoutForm(FlaskForm):
    pass


def _logged_out_page() -> ResponseReturnValue:
    return render_template("oauth/logged_out.html")


def _end_browser_session() -> None:
    user = current_user()
    if user is not None:
        audit.record(
            db.session, "user.sign_out", actor_id=user.id, subject_id=user.id, via="end_session"
        )
    sign_out()


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt  # relying parties send their users here; without a valid hint we confirm first
def end_session() -> ResponseReturnValue:
    """OpenID Connect RP-Initiated Logout 1.0 sections 2-4."""
    data = request.values
    hint = data.get("id_token_hint")
    client_id = data.get("client_id")
    redirect_to = data.get("post_logout_redirect_uri")
    claims = None
    if hint:
        claims = runtime().tokens.verify_jwt(db.session, hint, typ="JWT", check_exp=False)
        if claims is None:
            # Section 4: on errors the OP must not redirect (OIDC-62, OIDC-69).
            return render_template(
                "oauth/error.html", message="The logout request carries an invalid ID token."
            ), 400
    client = (
        server().query_client(client_id or (claims or {}).get("aud"))
        if (client_id or claims)
        else None
    )
    if client_id and claims is not None and claims.get("aud") != client_id:
        return render_template(
            "oauth/error.html", message="The logout request names two different applications."
        ), 400
    if redirect_to and (
        client is None or claims is None or not client.check_post_logout_redirect_uri(redirect_to)
    ):
        # Never to an unregistered address, and never without proof the client asked.
        redirect_to = None
    user = current_user()
    same_user = claims is not None and user is not None and claims.get("sub") == str(user.id)
    if user is not None and not same_user:
        # No proof the signed-in user's own client asked (TOK-17): confirm first.
        return render_template("oauth/logout_confirm.html", form=LogoutForm(), client=client)
    _end_browser_session()
    db.session.commit()
    if redirect_to:
        state = data.get("state")
        return redirect(
            add_params_to_uri(redirect_to, [("state", state)]) if state else redirect_to
        )
    return _logged_out_page()


@bp.post("/logout/confirm")
def end_session_confirmed() -> ResponseReturnValue:
    form = LogoutForm()
    if not form.validate_on_submit():
        return redirect(url_for("oidc.end_session"))
    _end_browser_session()
    db.session.commit()
    return _logged_out_page()
