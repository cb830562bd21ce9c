"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

Off unless IDENTITY_DCR_INITIAL_ACCESS_TOKEN is set; registering needs that bearer token,
managing a client needs the registration access token it was given. Only RFC 7591
metadata is accepted: trust flags, roles and ids are never settable here (AUTHZ-12).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from identity.errors import InvalidInput
from identity.extensions import csrf, db, limiter
from identity.models.oauth import Client
from identity.oauth import clients as client_service
from identity.oauth.keys import ALGORITHMS
from identity.oauth.metadata import InvalidClientMetadata, clean_client_name, normalize_metadata
from identity.oauth.scopes import KNOWN_SCOPES
from identity.oauth.server import NO_STORE, endpoint_urls
from identity.runtime import runtime
from identity.tokens import token_hash

bp = Blueprint("registration", __name__)


def _error(status: int, error: str, description: str) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers.update(NO_STORE)
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


def _bearer() -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidClientMetadata("the body must be a JSON object")
    return body


def _normalize(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = clean_client_name(body.get("client_name"))
    meta = normalize_metadata(
        body,
        known_scopes=KNOWN_SCOPES,
        # OIDC Registration 2 / Discovery 3: only algorithms the server signs ID tokens with
        # (id_token_signing_alg_values_supported); another would fail at the token endpoint.
        signing_algs=tuple(a for a in ALGORITHMS if a in runtime().keys.ring(db.session).signing),
        default_id_token_alg="RS256",  # noqa: S106 - OIDC Registration 2 default
    )
    return name, meta


def _client_response(row: Client, status: int, **secrets: str | None) -> Response:
    issuer = runtime().settings.issuer
    body: dict[str, Any] = {
        "client_id": row.client_id,
        "client_name": row.name,
        "client_id_issued_at": int(row.created_at.timestamp()),
        "registration_client_uri": f"{endpoint_urls(issuer)['registration_endpoint']}/"
        f"{row.client_id}",
        **row.meta,
    }
    if row.client_secret_hash is not None:
        body["client_secret_expires_at"] = 0
    body.update({k: v for k, v in secrets.items() if v})
    response = jsonify(body)
    response.status_code = status
    response.headers.update(NO_STORE)
    return response


def _enabled() -> str:
    token = runtime().settings.dcr_initial_access_token
    if token is None:
        abort(404)
    return token.get_secret_value()


@bp.post("/oauth/register")
@csrf.exempt
@limiter.limit("20/minute")
def register() -> ResponseReturnValue:
    expected = _enabled()
    if not hmac.compare_digest(_bearer().encode(), expected.encode()):
        return _error(401, "invalid_token", "A valid initial access token is required.")
    try:
        name, meta = _normalize(_body())
    except InvalidInput as error:
        return _error(
            400,
            error.code if isinstance(error, InvalidClientMetadata) else "invalid_client_metadata",
            error.message,
        )
    created = client_service.create_client(
        db.session, name=name, meta=meta, registered_via="dynamic", with_registration_token=True
    )
    db.session.commit()
    return _client_response(
        created.client,
        201,
        client_secret=created.client_secret,
        registration_access_token=created.registration_access_token,
    )


def _managed_client(client_id: str) -> Client | Response:
    _enabled()
    token = _bearer()
    row = db.session.query(Client).filter_by(client_id=client_id).one_or_none()
    # The same answer for a wrong token and an unknown client (RFC 7592 section 2).
    if (
        row is None
        or row.registration_token_hash is None
        or not token
        or not hmac.compare_digest(token_hash(token), row.registration_token_hash)
    ):
        return _error(
            401, "invalid_token", "The registration access token is not valid for this client."
        )
    return row


@bp.route("/oauth/register/<client_id>", methods=["GET", "PUT", "DELETE"])
@csrf.exempt
@limiter.limit("60/minute")
def manage(client_id: str) -> ResponseReturnValue:
    row = _managed_client(client_id)
    if isinstance(row, Response):
        return row
    if request.method == "GET":
        return _client_response(row, 200)
    if request.method == "DELETE":
        client_service.delete_client(db.session, row)
        db.session.commit()
        runtime().clients.invalidate(client_id)
        return Response(status=204)
    try:
        body = _body()
        if body.get("client_id", client_id) != client_id:
            raise InvalidClientMetadata("client_id cannot change")
        if "client_secret" in body and (
            row.client_secret_hash is None
            or not hmac.compare_digest(
                token_hash(str(body["client_secret"])), row.client_secret_hash
            )
        ):
            raise InvalidClientMetadata("client_secret does not match")
        name, meta = _normalize(body)
    except InvalidInput as error:
        return _error(
            400,
            error.code if isinstance(error, InvalidClientMetadata) else "invalid_client_metadata",
            error.message,
        )
    if meta["token_endpoint_auth_method"] != row.meta.get("token_endpoint_auth_method"):
        return _error(400, "invalid_client_metadata", "token_endpoint_auth_method cannot change")
    row.name = name
    row.meta = meta
    db.session.commit()
    runtime().clients.invalidate(client_id)
    return _client_response(row, 200)
