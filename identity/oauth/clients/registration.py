"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

Off unless IDENTITY_DCR_INITIAL_ACCESS_TOKEN is set; registering needs that bearer token,
managing a client needs the registration access token it was given. Only RFC 7591
metadata is accepted: trust flags, roles and ids are never settable here (AUTHZ-12).
"""

from __future__ import annotations

import hmac
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from identity.errors import NO_STORE, InvalidInput, json_error, machine_facing
from identity.extensions import csrf, db, limit
from identity.models.oauth import Client
from identity.oauth.authorization_server import endpoint_urls
from identity.oauth.clients import service as client_service
from identity.oauth.clients.authentication import REQUEST_OBJECT_ALGORITHMS
from identity.oauth.clients.metadata import (
    INTERNAL_METADATA,
    InvalidClientMetadata,
    clean_client_name,
    normalize_metadata,
)
from identity.oauth.keys import ALGORITHMS
from identity.oauth.scopes import KNOWN_SCOPES, PRIVILEGED_SCOPES
from identity.random_tokens import new_token, token_hash
from identity.rbac.access import serves
from identity.runtime import runtime

bp = serves(
    machine_facing(Blueprint("registration", __name__)),
    "protocol",
    "RFC 7592: a registration access token reaches only its own client",
)
MAX_JSON_DEPTH = 32  # nothing valid nests this deep


def _error(status: int, error: str, description: str) -> Response:
    challenge = (
        [("WWW-Authenticate", f'Bearer error="{error}"')]
        if status == HTTPStatus.UNAUTHORIZED
        else []
    )
    return json_error(status, error, description, challenge)


def _bearer() -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # deeply nested JSON
        body = None
    if not isinstance(body, dict):
        raise InvalidClientMetadata("the body must be a JSON object")
    if _holds_nul(body):
        raise InvalidClientMetadata("the metadata contains a NUL character")
    return body


def _holds_nul(value: Any, depth: int = 0) -> bool:
    """Whether any string in a JSON document holds U+0000, which PostgreSQL refuses."""
    if depth > MAX_JSON_DEPTH:
        return True  # refuse rather than recurse
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k, depth) or _holds_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v, depth + 1) for v in value)
    return False


def _normalize(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = clean_client_name(body.get("client_name"), required=False)
    meta = normalize_metadata(
        body,
        known_scopes=KNOWN_SCOPES - PRIVILEGED_SCOPES,
        # OIDC Registration 2 / Discovery 3: only algorithms the server signs ID tokens with
        # (id_token_signing_alg_values_supported); another would fail at the token endpoint.
        signing_algs=tuple(a for a in ALGORITHMS if a in runtime().keys.ring(db.session()).signing),
        default_id_token_alg="RS256",  # noqa: S106 - OIDC Registration 2 default  # nosec B106
        request_object_algs=REQUEST_OBJECT_ALGORITHMS,
    )
    return name, meta


def _client_response(row: Client, status: int, **secrets: str | None) -> Response:
    issuer = runtime().settings.issuer
    body: dict[str, Any] = {
        "client_id": row.client_id,
        "client_id_issued_at": int(row.created_at.timestamp()),
        "registration_client_uri": f"{endpoint_urls(issuer)['registration_endpoint']}/"
        f"{row.client_id}",
        **{k: v for k, v in row.meta.items() if k not in INTERNAL_METADATA},
    }
    if row.name:
        body["client_name"] = row.name
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
@limit("20/minute")
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
        db.session(), name=name, meta=meta, registered_via="dynamic", with_registration_token=True
    )
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
@limit("60/minute")
def manage(client_id: str) -> ResponseReturnValue:
    row = _managed_client(client_id)
    if isinstance(row, Response):
        return row
    if request.method == "GET":
        token = _rotate_registration_token(row)
        return _client_response(row, 200, registration_access_token=token)
    if request.method == "DELETE":
        client_service.delete_client(db.session(), row)
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
    client_service.update_client(db.session(), row, name=name, meta=meta)
    token = _rotate_registration_token(row)
    return _client_response(row, 200, registration_access_token=token)


def _rotate_registration_token(row: Client) -> str:
    """RFC 7592 sections 2.1 and 3: a read or update answers with the registration access
    token. Only its hash is stored, so a new one is issued and the old one stops working
    (as Keycloak does); a client keeps the latest one it was given."""
    token = new_token()
    row.registration_token_hash = token_hash(token)
    return token
