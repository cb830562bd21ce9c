"""Back-channel endpoints: token, introspection, revocation, PAR, device authorization.

They take form-encoded bodies from clients, not browsers: no CSRF token, no cookies, CORS
open so browser-based public clients can call them. Parameters in the URL query are
refused: client secrets and tokens must never travel in URLs (BCP-34, WEB-11).
"""

from __future__ import annotations

from datetime import timedelta

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from identity.extensions import csrf, db, limiter
from identity.models.base import utcnow
from identity.models.oauth import PendingAuthorization
from identity.oauth import authorize as flow
from identity.oauth.authorize import ErrorPage
from identity.oauth.metadata import AUTH_METHODS
from identity.oauth.server import NO_STORE, server
from identity.runtime import runtime
from identity.tokens import new_token, token_hash

bp = Blueprint("oauth_api", __name__)
CLIENT_CREDENTIAL_PARAMS = {"client_secret", "client_assertion", "client_assertion_type"}


def oauth_error(error: OAuth2Error) -> Response:
    status, body, headers = error()
    response = jsonify(dict(body))
    response.status_code = status
    for name, value in [*headers, *NO_STORE.items()]:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


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


def _commit_and_return(response: Response) -> Response:
    # Error answers may carry state worth keeping: a revoked family after a replay, the
    # last poll time of a device, a consumed code. A request that touched nothing (a
    # client_credentials token, a cached client) has nothing to commit: skip the empty
    # transaction the session would otherwise start and end.
    if not db.session.registry.has():
        return response  # the request never used the database session
    session = db.session()
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        session.commit()
    return response


@bp.route("/oauth/token", methods=["POST", "OPTIONS"])
@csrf.exempt
def token() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return _commit_and_return(server().create_token_response())


@bp.route("/oauth/introspect", methods=["POST", "OPTIONS"])
@csrf.exempt
def introspect() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return _commit_and_return(server().create_endpoint_response("introspection"))


@bp.route("/oauth/revoke", methods=["POST", "OPTIONS"])
@csrf.exempt
def revoke() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return _commit_and_return(server().create_endpoint_response("revocation"))


@bp.route("/oauth/device_authorization", methods=["POST", "OPTIONS"])
@csrf.exempt
def device_authorization() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 204
    return _commit_and_return(server().create_endpoint_response("device_authorization"))


@bp.route("/oauth/par", methods=["POST", "OPTIONS"])
@csrf.exempt
@limiter.limit("60/minute")
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
    params = MultiDict(
        [(k, v) for k, v in request.form.items(multi=True) if k not in CLIENT_CREDENTIAL_PARAMS]
    )
    if "request_uri" in params:
        return oauth_error(InvalidRequestError("request_uri is not allowed in a pushed request."))
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
    reference = new_token()
    lifetime = runtime().settings.par_lifetime
    now = utcnow()
    db.session.add(
        PendingAuthorization(
            id_hash=token_hash(reference),
            client_pk=client.pk,
            params={k: params[k] for k in params},
            pushed=True,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    db.session.commit()
    response = jsonify(request_uri=flow.PAR_URN_PREFIX + reference, expires_in=lifetime)
    response.status_code = 201
    response.headers.update(NO_STORE)
    return response
