"""Roles and permissions in tokens (issue 10, item 4): for the client asking, what the user
has through groups and inheritance, application roles of that client only, and of the
permissions the client chose for tokens those the user holds; the service account's in
client credentials tokens."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.oauth.conftest import ModeFlow, bearer, unverified


def client_pk(app: Flask, client_id: str) -> Any:
    from identity.extensions import db
    from identity.models.oauth import Client

    with app.app_context():
        return db.session.execute(
            select(Client.id).where(Client.client_id == client_id)
        ).scalar_one()


def test_user_tokens_carry_roles_and_permissions_for_this_client(
    app: Flask, client: FlaskClient, user: Any, make_client: Any
) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    billing = make_client("Billing", scope="openid profile roles permissions")
    crm = make_client("CRM", scope="openid roles permissions")
    with app.app_context():
        session = db.session
        billing_pk = client_pk(app, billing.client_id)
        rbac.declare_permission(session, billing_pk, "invoices:read", in_token=True)
        rbac.declare_permission(session, billing_pk, "invoices:approve", in_token=True)
        rbac.declare_permission(session, billing_pk, "invoices:delete", in_token=False)
        rbac.create_role(session, "viewer", permissions=["invoices:read"])
        rbac.create_role(session, "approver", permissions=["invoices:approve"], parents=["viewer"])
        rbac.create_role(session, "staff")
        finance = rbac.create_group(session, "finance")
        rbac.add_member(session, finance, session.get(rbac.User, user))
        rbac.assign(
            session,
            rbac.role_by_name(session, "approver"),
            rbac.Principal("group", finance.id),
            scope=billing_pk,
        )
        rbac.give_roles(session, rbac.Principal("user", user), ["staff"])
        session.commit()
        app.extensions["identity"].changes.changed_here({"rbac", "clients"})

    body = ModeFlow(client, "query").tokens(billing, scope="openid roles permissions")
    _, id_claims = unverified(body["id_token"])
    _, access = unverified(body["access_token"])
    assert id_claims["roles"] == ["approver", "staff", "viewer"]
    assert id_claims["permissions"] == ["invoices:approve", "invoices:read"]  # not delete
    assert access["roles"] == ["approver", "staff", "viewer"]
    assert access["permissions"] == ["invoices:approve", "invoices:read"]
    info = client.get("/userinfo", headers=bearer(body["access_token"])).json
    assert info["roles"] == ["approver", "staff", "viewer"]
    assert info["permissions"] == ["invoices:approve", "invoices:read"]

    # The application role is billing's: the CRM sees only the global role.
    other = ModeFlow(client, "query").tokens(crm, scope="openid roles permissions")
    _, crm_id = unverified(other["id_token"])
    assert crm_id["roles"] == ["staff"]
    assert crm_id["permissions"] == []


def test_without_the_scopes_the_id_token_carries_neither(
    app: Flask, client: FlaskClient, user: Any, make_client: Any
) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    rp = make_client("RP", scope="openid roles permissions")
    with app.app_context():
        rbac.create_role(db.session, "staff")
        rbac.give_roles(db.session, rbac.Principal("user", user), ["staff"])
        db.session.commit()
        app.extensions["identity"].changes.changed_here({"rbac"})
    body = ModeFlow(client, "query").tokens(rp, scope="openid")
    _, id_claims = unverified(body["id_token"])
    assert "roles" not in id_claims and "permissions" not in id_claims
    _, access = unverified(body["access_token"])
    assert access["roles"] == ["staff"]  # RFC 9068: the resource server's view
