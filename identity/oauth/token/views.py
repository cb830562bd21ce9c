"""Back-channel endpoints: token, introspection, revocation, PAR, device authorization.

They take form-encoded bodies from clients, not browsers: no CSRF token, no cookies, CORS
open so browser-based public clients can call them. Parameters in the URL query are
refused: client secrets and tokens must never travel in URLs (BCP-34, WEB-11).
"""

from __future__ import annotations

from http import HTTPStatus

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from identity import audit
from identity.errors import NO_STORE, json_error, machine_facing
from identity.extensions import csrf, db, limit
from identity.oauth.authorization_server import server
from identity.oauth.authorize import flow
from identity.oauth.authorize.flow import ErrorPage
from identity.oauth.clients.metadata import AUTH_METHODS
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import client_ip

bp = serves(
    machine_facing(Blueprint("oauth_api", __name__)),
    "protocol",
    "client-authenticated endpoints; introspection reveals a token only to its audience",
)


def oauth_error(error: OAuth2Error) -> Response:
    """An Authlib error raised outside Authlib's own endpoints (PAR, the query check)."""
    status, body, headers = error()
    body = dict(body)
    return json_error(status, body.pop("error"), body.pop("error_description", None), headers)


@bp.before_request
def _reject_query_parameters() -> Response | None:
    if request.method == "POST" and request.args:
        return oauth_error(InvalidRequestError("Parameters must be sent in the request body."))
    return None


@bp.after_request
def _cors(response: Response) -> Response:
    # No cookies are read here, so any origin may call (bearer and client auth only).
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, DPoP"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    return response


def _client_key() -> str:
    """The client an endpoint request names (HTTP Basic or the form's client_id), for the
    per-client rate limit; a public client cannot prove it, so the per-IP limit applies too.
    A request that names none (a client assertion may leave client_id out) is counted by
    its address instead of in one bucket shared by all such clients."""
    client_id = _claimed_client_id()
    return f"client:{client_id}" if client_id else f"client-ip:{client_ip()}"


def _per_client_limits(view):  # type: ignore[no-untyped-def]
    by_ip = limit(lambda: runtime().settings.ratelimit_client_ip, methods=["POST"])
    by_client = limit(
        lambda: runtime().settings.ratelimit_client, key_func=_client_key, methods=["POST"]
    )
    return by_ip(by_client(view))


def _claimed_client_id() -> str | None:
    """The client the request says it is (not yet authenticated), cut to a sane length."""
    auth = request.authorization
    claimed = (auth.username if auth and auth.type == "basic" else None) or request.form.get(
        "client_id"
    )
    return claimed[:64] if claimed else None


def _audited(event: str, response: Response) -> Response:
    """A refused token request is a security event (ASVS V16): audited with the client it
    claimed, the grant type and the OAuth error code; never a code, token or secret."""
    if response.status_code >= HTTPStatus.BAD_REQUEST:
        error = (response.get_json(silent=True) or {}).get("error")
        audit.record(
            db.session(),
            event,
            outcome="failure",
            client_id=_claimed_client_id(),
            grant_type=str(request.form.get("grant_type", ""))[:64],
            error=str(error)[:64] if error else None,
        )
    return response


@bp.route("/oauth/token", methods=["POST", "OPTIONS"])
@csrf.exempt
def token() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return _audited("oauth.token_refused", server().create_token_response())


@bp.route("/oauth/introspect", methods=["POST", "OPTIONS"])
@csrf.exempt
def introspect() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return server().create_endpoint_response("introspection")


@bp.route("/oauth/revoke", methods=["POST", "OPTIONS"])
@csrf.exempt
def revoke() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    response = server().create_endpoint_response("revocation")
    if response.status_code == HTTPStatus.OK:
        # RFC 7009 answers 200 whether or not the token was known: record the request.
        audit.record(db.session(), "oauth.token_revocation", client_id=_claimed_client_id())
    return _audited("oauth.token_revocation", response)


@bp.route("/oauth/device_authorization", methods=["POST", "OPTIONS"])
@csrf.exempt
@_per_client_limits
def device_authorization() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return server().create_endpoint_response("device_authorization")


@bp.route("/oauth/par", methods=["POST", "OPTIONS"])
@csrf.exempt
@_per_client_limits
def pushed_authorization_request() -> ResponseReturnValue:
    """RFC 9126: the client pushes its authorization request and gets a request_uri."""
    if request.method == "OPTIONS":
        return "", 204
    srv = server()
    oauth_request = srv.create_oauth2_request(None)
    try:
        client = srv.authenticate_client(oauth_request, list(AUTH_METHODS), "token")
    except OAuth2Error as error:
        return oauth_error(error)
    try:
        # Only authorization request parameters are kept, within the size limits.
        params = flow.known_params(request.form)
    except ErrorPage as error:
        return oauth_error(InvalidRequestError(error.message))
    if "request_uri" in params:
        return oauth_error(InvalidRequestError("request_uri is not allowed in a pushed request."))
    if "request" in params:  # RFC 9126 section 3: a request object may be pushed
        params.setdefault("client_id", client.client_id)
        try:
            params = flow.resolve_request_object(params)
        except ErrorPage as error:
            return oauth_error(InvalidRequestError(error.message))
        except OAuth2Error as error:
            error.redirect_uri = None  # PAR answers directly, never by redirect
            return oauth_error(error)
    if params.get("client_id", client.client_id) != client.client_id:
        return oauth_error(
            InvalidClientError(description="client_id does not match the authenticated client.")
        )
    params.setdefault("client_id", client.client_id)
    try:
        flow.validate(params, "POST")
    except ErrorPage as error:
        return oauth_error(InvalidRequestError(error.message))
    except OAuth2Error as error:
        error.redirect_uri = None  # PAR answers directly, never by redirect
        return oauth_error(error)
    lifetime = runtime().settings.par_lifetime
    request_uri = flow.push(db.session(), client, {k: params[k] for k in params}, lifetime)
    response = jsonify(request_uri=request_uri, expires_in=lifetime)
    response.status_code = 201
    response.headers.update(NO_STORE)
    return response
