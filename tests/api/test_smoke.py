"""The admin API end to end through a service account's token."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, service_token


def test_roles_round_trip(admin_api: Api) -> None:
    created = admin_api.post(
        "/roles", json={"name": "billing-admin", "permissions": ["invoices:*"]}
    )
    assert created.status_code == 201, created.json
    assert created.json["permissions"] == ["invoices:*"]
    assert created.headers["ETag"]
    listed = admin_api.get("/roles")
    assert {r["name"] for r in listed.json["items"]} >= {"admin", "billing-admin"}


def test_no_admin_permission_no_admin_scope(
    app: Any, make_client: Any, builtin_roles: None
) -> None:
    client = make_client(
        "plain", grant_types=["client_credentials"], redirect_uris=[], scope="roles"
    )
    response = service_token(app, client)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


def test_LOG_01_a_service_account_is_named_as_the_actor(app: Any, admin_api: Api) -> None:
    """Changes a service account makes through the API name it in their audit records."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.audit import AuditEvent

    assert admin_api.post("/groups", json={"name": "audited"}).status_code == 201
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event == "group.create")
        (event,) = db.session.execute(query).scalars()
    assert event.actor_id is None
    assert event.data["actor_client"]
    assert event.data["group"] == "audited"
