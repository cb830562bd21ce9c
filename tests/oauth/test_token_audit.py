"""Token endpoint security events reach the audit trail (LOG-01): a refused token request
with the client it claimed, the grant type and the error; a revocation request."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select


def events(app: Flask, name: str) -> list[Any]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)
        return list(db.session.execute(query).scalars())


def test_LOG_01_a_refused_token_request_is_audited(
    app: Flask, client: FlaskClient, make_client: Any
) -> None:
    rp = make_client()
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "not-a-code",
            "redirect_uri": rp.redirect_uri,
        },
        headers=rp.basic_auth(),
    )
    assert response.status_code == 400
    (event,) = events(app, "oauth.token_refused")
    assert event.outcome == "failure"
    assert event.client_id == rp.client_id
    assert event.data == {"grant_type": "authorization_code", "error": "invalid_grant"}
    assert "not-a-code" not in str(event.data)

    wrong = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + b64encode(f"{rp.client_id}:nope".encode()).decode()},
    )
    assert wrong.status_code == 401
    assert [e.data["error"] for e in events(app, "oauth.token_refused")] == [
        "invalid_grant",
        "invalid_client",
    ]


def test_LOG_01_a_revocation_is_audited(app: Flask, client: FlaskClient, make_client: Any) -> None:
    rp = make_client()
    response = client.post(
        "/oauth/revoke", data={"token": "whatever-it-was"}, headers=rp.basic_auth()
    )
    assert response.status_code == 200
    (event,) = events(app, "oauth.token_revocation")
    assert event.outcome == "success"
    assert event.client_id == rp.client_id
    assert "whatever-it-was" not in str(event.data)
