"""The console's clients pages under the Flask test client: the list, a client's page,
registering and changing through the form (the admin API's own models), the secret shown
once, rotating and deleting with a fresh proof, declared permissions; and what each
built-in role may see and do."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.admin.conftest import REAUTH, submit
from tests.conftest import csrf_token
from tests.functional.conftest import audit_events

NEW = "/admin/clients/new"
SHOP = {
    "name": "Shop",
    "redirect_uris": "https://shop.example/cb\n\n  https://shop.example/cb2  \n",
    "post_logout_redirect_uris": "https://shop.example/bye",
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile email",
    "token_endpoint_auth_method": "",
    "id_token_signed_response_alg": "",
}


def register(client: FlaskClient, **fields: Any) -> tuple[str, str | None, Any]:
    """Register through the form: the client id, the secret the answer shows, the answer."""
    answer = submit(client, NEW, **{**SHOP, **fields})
    assert answer.status_code == 201, answer.text
    client_id = re.search(r"/admin/clients/([^/\"]+)/edit", answer.text)
    assert client_id
    secret = re.search(r'data-testid="client-secret"', answer.text) and re.search(
        r'value="([^"]+)" readonly', answer.text
    )
    return client_id.group(1), secret.group(1) if secret else None, answer


def stored(app: Flask, client_id: str) -> Any:
    """The client's row (detached), or None."""
    from identity.extensions import db
    from identity.models.oauth import Client

    with app.app_context():
        row = db.session.execute(
            select(Client).where(Client.client_id == client_id)
        ).scalar_one_or_none()
        if row is not None:
            db.session.expunge(row)
        return row


def count(app: Flask) -> int:
    from identity.extensions import db
    from identity.models.oauth import Client

    with app.app_context():
        return int(db.session.execute(select(func.count()).select_from(Client)).scalar_one())


def secret_works(app: Flask, client_id: str, secret: str) -> bool:
    from identity.oauth.clients.service import ClientView

    return bool(ClientView.of(stored(app, client_id)).check_client_secret(secret))


def declared(app: Flask, client_id: str) -> list[str]:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        return [p.name for p in rbac.client_permissions(db.session, stored(app, client_id).id)]


# -- the list --------------------------------------------------------------------------------


def test_empty_list_invites_to_register(admin: FlaskClient, operator: Any) -> None:
    auditor = operator("auditor")  # before the first page loads the policy
    page = admin.get("/admin/clients")
    assert page.status_code == 200
    assert "No client is registered yet" in page.text
    assert 'href="/admin/clients/new"' in page.text
    reader = auditor.get("/admin/clients")
    assert reader.status_code == 200
    assert "No client is registered yet" in reader.text
    assert "/admin/clients/new" not in reader.text


def test_list_shows_clients_a_page_at_a_time(admin: FlaskClient) -> None:
    ids = sorted(register(admin, name=f"App {n}")[0] for n in range(3))
    first = admin.get("/admin/clients?limit=2")
    assert first.status_code == 200
    assert '<th scope="col">Grant types</th>' in first.text
    assert ids[0] in first.text and ids[1] in first.text and ids[2] not in first.text
    assert "authorization_code, refresh_token" in first.text
    assert "client_secret_basic" in first.text
    following = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert following
    second = admin.get(following.group(1).replace("&amp;", "&"))
    assert ids[2] in second.text and ids[0] not in second.text
    assert 'rel="next"' not in second.text
    assert admin.get("/admin/clients?cursor=%%%").status_code == 400
    assert admin.get("/admin/clients?limit=0").status_code == 400


# -- registering -----------------------------------------------------------------------------


def test_register_a_confidential_client_shows_its_secret_once(
    app: Flask, admin: FlaskClient
) -> None:
    client_id, secret, answer = register(admin)
    assert secret and secret_works(app, client_id, secret)
    assert answer.headers["Cache-Control"] == "no-store"
    assert "it will not be shown again" in answer.text
    assert "Shop is registered." in answer.text
    row = stored(app, client_id)
    assert row.meta["redirect_uris"] == ["https://shop.example/cb", "https://shop.example/cb2"]
    assert row.meta["post_logout_redirect_uris"] == ["https://shop.example/bye"]
    assert row.registered_via == "api" and not row.first_party
    # Never again: not on the client's page, not in a flash message or the session.
    page = admin.get(f"/admin/clients/{client_id}")
    assert page.status_code == 200
    assert secret not in page.text and "client-secret" not in page.text
    assert secret not in admin.get("/admin/clients").text
    with admin.session_transaction() as session:
        assert secret not in repr(dict(session))
    (event,) = audit_events(app, "client.create")
    assert event["data"]["via"] == "api"
    assert secret not in repr(audit_events(app))


def test_client_page_shows_every_field(app: Flask, admin: FlaskClient) -> None:
    client_id, _, _ = register(
        admin,
        name="Billing",
        redirect_uris="",
        grant_types=["client_credentials"],
        scope="",
        token_endpoint_auth_method="client_secret_post",
        id_token_signed_response_alg="ES256",
        resource_server="1",
        roles=["auditor"],
    )
    page = admin.get(f"/admin/clients/{client_id}").text
    for expected in (
        client_id,
        "client_credentials",
        "client_secret_post",
        "ES256",
        "may introspect any token",
        "<code>auditor</code>",
        "Created",
        "Updated",
        "This client declares no permission.",
    ):
        assert expected in page, expected


def test_a_public_client_gets_no_secret_and_no_rotation(app: Flask, admin: FlaskClient) -> None:
    client_id, secret, answer = register(
        admin, redirect_uris="http://127.0.0.1:8400/cb", token_endpoint_auth_method="none"
    )
    assert secret is None
    assert "it is public" in answer.text
    page = admin.get(f"/admin/clients/{client_id}").text
    assert "Rotate the secret" not in page and "Delete the client" in page
    refused = submit(
        admin, f"/admin/clients/{client_id}", f"/admin/clients/{client_id}/secret", **REAUTH
    )
    assert refused.status_code == 400
    assert "does not authenticate with a secret" in refused.text
    assert audit_events(app, "client.secret_rotated") == []


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"redirect_uris": "http://shop.example/cb"}, 400, "redirect_uris", "loopback"),
        ({"post_logout_redirect_uris": "https://x.example/#f"}, 400, "post_logout", "fragment"),
        ({"grant_types": []}, 400, "grant_types", "must not be empty"),
        ({"scope": "openid wishes"}, 400, "scope", "unknown scopes: wishes"),
        ({"name": "x" * 201}, 422, "name", "at most 200 characters"),
        ({"jwks": "{not json"}, 422, "jwks", "Not valid JSON"),
        ({"id_token_signed_response_alg": "none"}, 422, "id_token_signed_response_alg", ""),
        ({"name": ""}, 400, "name", "client_name is required"),
    ],
)
def test_an_invalid_form_shows_the_error_beside_its_field(
    app: Flask, admin: FlaskClient, fields: dict[str, Any], status: int, field: str, message: str
) -> None:
    answer = submit(admin, NEW, **{**SHOP, **fields})
    assert answer.status_code == status, answer.text
    error = re.search(rf'<p class="error" id="({field}[a-z_]*)-error">([^<]*)</p>', answer.text)
    assert error, answer.text
    assert message in error.group(2).replace("&#39;", "'")
    assert f'aria-describedby="{error.group(1)}-hint {error.group(1)}-error"' in answer.text
    assert 'value="Shop"' in answer.text or "name" in fields  # what was typed stays
    assert "https://shop.example/bye</textarea>" in answer.text or "post_logout" in field
    assert count(app) == 0


def test_trust_and_roles_need_what_they_give(app: Flask, operator: Any, admin: FlaskClient) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        rbac.create_role(db.session, "client-writer", permissions=["clients:*"])
        db.session.commit()
    writer = operator("client-writer")
    form = writer.get(NEW).text
    assert 'name="roles"' not in form  # no roles:assign
    refused = submit(writer, NEW, **{**SHOP, "first_party": "1"})
    assert refused.status_code == 403
    assert "cannot grant what you do not hold" in refused.text
    assert submit(writer, NEW, **{**SHOP, "roles": ["auditor"]}).status_code == 403
    assert count(app) == 0
    assert register(writer)[0]


# -- changing --------------------------------------------------------------------------------


def edit_form(client: FlaskClient, client_id: str) -> tuple[str, dict[str, str]]:
    page = client.get(f"/admin/clients/{client_id}/edit")
    assert page.status_code == 200, page.text
    version = re.search(r'name="version" value="([^"]+)"', page.text)
    assert version
    hidden = {"csrf_token": csrf_token(page.data), "version": html.unescape(version.group(1))}
    return page.text, hidden


def test_edit_changes_the_redirect_uris(app: Flask, admin: FlaskClient) -> None:
    client_id, secret, _ = register(admin)
    page, hidden = edit_form(admin, client_id)
    assert "https://shop.example/cb\nhttps://shop.example/cb2</textarea>" in page
    assert 'name="grant_types"' not in page  # fixed at registration
    answer = admin.post(
        f"/admin/clients/{client_id}/edit",
        data={
            **hidden,
            "name": "Shop 2",
            "redirect_uris": "https://shop.example/new",
            "post_logout_redirect_uris": "",
            "scope": "openid",
        },
    )
    assert answer.status_code == 303
    assert answer.location.endswith(f"/admin/clients/{client_id}")
    assert "Shop 2 is changed." in admin.get(answer.location).text
    row = stored(app, client_id)
    assert row.name == "Shop 2" and row.meta["redirect_uris"] == ["https://shop.example/new"]
    assert row.meta["post_logout_redirect_uris"] == [] and row.meta["scope"] == "openid"
    assert row.meta["token_endpoint_auth_method"] == "client_secret_basic"
    assert secret and secret_works(app, client_id, secret)
    (event,) = audit_events(app, "client.update")
    assert "redirect_uris" in event["data"]["changed"]


def test_a_stale_edit_is_refused(app: Flask, admin: FlaskClient) -> None:
    client_id, _, _ = register(admin)
    _, hidden = edit_form(admin, client_id)
    _, fresh = edit_form(admin, client_id)
    first = admin.post(
        f"/admin/clients/{client_id}/edit",
        data={**fresh, "name": "Mine", "redirect_uris": "https://shop.example/cb", "scope": ""},
    )
    assert first.status_code == 303
    stale = admin.post(
        f"/admin/clients/{client_id}/edit",
        data={**hidden, "name": "Theirs", "redirect_uris": "https://x.example/cb", "scope": ""},
    )
    assert stale.status_code == 409
    assert "Someone changed this client" in stale.text
    assert 'value="Mine"' in stale.text  # the current values
    row = stored(app, client_id)
    assert row.name == "Mine" and row.meta["redirect_uris"] == ["https://shop.example/cb"]
    assert len(audit_events(app, "client.update")) == 1


def test_an_invalid_edit_changes_nothing(app: Flask, admin: FlaskClient) -> None:
    client_id, _, _ = register(admin)
    _, hidden = edit_form(admin, client_id)
    answer = admin.post(
        f"/admin/clients/{client_id}/edit",
        data={**hidden, "name": "Shop", "redirect_uris": "javascript:alert(1)", "scope": ""},
    )
    assert answer.status_code == 400
    assert 'id="redirect_uris-error"' in answer.text
    assert stored(app, client_id).meta["redirect_uris"][0] == "https://shop.example/cb"
    assert audit_events(app, "client.update") == []


# -- the secret and deleting: a fresh proof ---------------------------------------------------


def test_AUTHZ_13_rotate_the_secret_with_a_fresh_proof(app: Flask, admin: FlaskClient) -> None:
    client_id, old, _ = register(admin)
    page = f"/admin/clients/{client_id}"
    action = f"{page}/secret"
    wrong = submit(admin, page, action, reauth="not my password")
    assert wrong.status_code == 400
    assert "password or authenticator code is not right" in wrong.text
    assert old and secret_works(app, client_id, old)
    assert submit(admin, page, action).status_code == 400  # no proof at all
    answer = submit(admin, page, action, **REAUTH)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert "it will not be shown again" in answer.text
    new = re.search(r'value="([^"]+)" readonly', answer.text)
    assert new and new.group(1) != old
    assert secret_works(app, client_id, new.group(1)) and not secret_works(app, client_id, old)
    assert new.group(1) not in admin.get(page).text
    with admin.session_transaction() as session:
        assert new.group(1) not in repr(dict(session))
    assert len(audit_events(app, "client.secret_rotated")) == 1


def test_AUTHZ_13_delete_with_a_fresh_proof_and_the_typed_client_id(
    app: Flask, admin: FlaskClient
) -> None:
    client_id, _, _ = register(admin)
    page = f"/admin/clients/{client_id}"
    action = f"{page}/delete"
    mistyped = submit(admin, page, action, confirm=client_id[:-1], **REAUTH)
    assert mistyped.status_code == 400
    assert f"Type {client_id} exactly" in mistyped.text
    wrong = submit(admin, page, action, confirm=client_id, reauth="nope")
    assert wrong.status_code == 400
    assert stored(app, client_id) is not None
    answer = submit(admin, page, action, confirm=client_id, **REAUTH)
    assert answer.status_code == 303 and answer.location.endswith("/admin/clients")
    assert "Shop is deleted." in admin.get("/admin/clients").text
    assert stored(app, client_id) is None
    assert admin.get(page).status_code == 404
    assert len(audit_events(app, "client.delete")) == 1


# -- declared permissions --------------------------------------------------------------------


def test_declare_and_remove_a_permission(app: Flask, admin: FlaskClient) -> None:
    client_id, _, _ = register(admin)
    page = f"/admin/clients/{client_id}"
    action = f"{page}/permissions"
    answer = submit(
        admin, page, action, name="invoices:read", description="Read invoices", in_token="1"
    )
    assert answer.status_code == 303 and answer.location.endswith(f"{page}#permissions")
    shown = admin.get(page).text
    assert "<code>invoices:read</code>" in shown and "Read invoices" in shown
    assert declared(app, client_id) == ["invoices:read"]
    reserved = submit(admin, page, action, name="users:read", description="")
    assert reserved.status_code == 400
    assert "identity&#39;s own" in reserved.text and 'value="users:read"' in reserved.text
    bad = submit(admin, page, action, name="Not A Name")
    assert bad.status_code == 400
    assert declared(app, client_id) == ["invoices:read"]
    removed = submit(admin, page, f"{action}/invoices:read/remove")
    assert removed.status_code == 303
    assert declared(app, client_id) == []
    assert [e["event"] for e in audit_events(app) if e["event"].startswith("permission.")] == [
        "permission.declare",
        "permission.remove",
    ]


# -- who may do what -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user-manager", "auditor"])
def test_AUTHZ_07_readers_see_clients_but_change_nothing(
    app: Flask, admin: FlaskClient, operator: Any, role: str
) -> None:
    reader = operator(role)  # before the first page loads the policy
    client_id, secret, _ = register(admin)
    page = f"/admin/clients/{client_id}"
    shown = reader.get(page)
    assert shown.status_code == 200
    for absent in ("/edit", "/secret", "/delete", "/permissions", "Declare a permission"):
        assert absent not in shown.text, absent
    assert "Register a client" not in reader.get("/admin/clients").text
    assert reader.get(NEW).status_code == 403
    assert reader.get(f"{page}/edit").status_code == 403
    token = csrf_token(reader.get("/account/sessions").data)  # the page has no form
    for action, data in (
        (NEW, SHOP),
        (f"{page}/edit", {"name": "Taken"}),
        (f"{page}/secret", REAUTH),
        (f"{page}/delete", {"confirm": client_id, **REAUTH}),
        (f"{page}/permissions", {"name": "invoices:read"}),
        (f"{page}/permissions/invoices:read/remove", {}),
    ):
        answer = reader.post(action, data={"csrf_token": token, **data})
        assert answer.status_code == 403, action
    row = stored(app, client_id)
    assert row.name == "Shop" and count(app) == 1
    assert secret and secret_works(app, client_id, secret)
    assert declared(app, client_id) == []


def test_a_user_without_a_role_is_refused(operator: Any) -> None:
    assert operator().get("/admin/clients").status_code == 403


def test_WEB_01_a_post_without_csrf_token_is_refused(app: Flask, admin: FlaskClient) -> None:
    client_id, secret, _ = register(admin)
    page = f"/admin/clients/{client_id}"
    for action, data in (
        (NEW, SHOP),
        (f"{page}/secret", REAUTH),
        (f"{page}/delete", {"confirm": client_id, **REAUTH}),
        (f"{page}/permissions", {"name": "invoices:read"}),
    ):
        assert admin.post(action, data=data).status_code == 400, action
    assert count(app) == 1 and secret and secret_works(app, client_id, secret)
    assert declared(app, client_id) == []
