"""The admin API's clients: registration, changes, secrets and declared permissions, through
a service account's token, with the rules `identity clients` follows."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.api.conftest import Api
from tests.oauth.conftest import RegisteredClient, fast_keys  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("fast_keys")

PROBLEM = "application/problem+json"
SERVICE = {
    "name": "Billing service",
    "grant_types": ["client_credentials"],
    "scope": "",
}
WEB_APP = {
    "name": "Shop",
    "redirect_uris": ["https://shop.example/cb"],
    "post_logout_redirect_uris": ["https://shop.example/bye"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile email",
    "token_endpoint_auth_method": "client_secret_basic",
}
# Every operation, with a path that exists once a client "CID" is registered.
OPERATIONS = [
    ("GET", "/clients", None),
    ("POST", "/clients", WEB_APP),
    ("GET", "/clients/CID", None),
    ("PATCH", "/clients/CID", {"name": "Renamed"}),
    ("DELETE", "/clients/CID", None),
    ("POST", "/clients/CID/secret", None),
    ("GET", "/clients/CID/permissions", None),
    ("PUT", "/clients/CID/permissions/invoices:read", {"description": "Read invoices"}),
    ("DELETE", "/clients/CID/permissions/invoices:read", None),
]
WRITES = [op for op in OPERATIONS if op[0] != "GET"]


@pytest.fixture
def registered(make_client: Any) -> RegisteredClient:
    """A relying party "Relying Party" registered before the test."""
    return make_client()  # type: ignore[no-any-return]


def created(api: Api, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.post("/clients", json=body or WEB_APP)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def token_for(app: Flask, client_id: str, secret: str | None) -> Any:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {raw}"},
    )


def claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT, not verified: base64url of its middle part."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.mimetype == PROBLEM
    assert response.json["status"] == status
    return response.json  # type: ignore[no-any-return]


def generation(app: Flask, topic: str) -> int:
    from identity.extensions import db
    from identity.models.change import ChangeGeneration

    with app.app_context():
        row = db.session.get(ChangeGeneration, topic)
        return row.generation if row is not None else 0


def audit_events(app: Flask, event: str) -> list[Any]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.seq)
        rows = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return rows


# -- success paths ----------------------------------------------------------------------


def test_register_read_and_list_a_client(app: Flask, admin_api: Api) -> None:
    """A client registered through the API is normalised as `identity clients create` does
    it, is published to every process and audited, and reads back with an ETag."""
    published = generation(app, "clients")
    body = created(admin_api)
    assert body["client_id"] and body["client_secret"]
    assert body["name"] == "Shop"
    assert body["redirect_uris"] == ["https://shop.example/cb"]
    assert body["post_logout_redirect_uris"] == ["https://shop.example/bye"]
    assert body["response_types"] == ["code"]
    assert body["id_token_signed_response_alg"] == "RS256"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["registered_via"] == "api"
    assert body["first_party"] is False and body["roles"] == []
    assert generation(app, "clients") > published
    (event,) = audit_events(app, "client.create")[-1:]
    assert event.client_id == body["client_id"] and event.data["via"] == "api"

    read = admin_api.get(f"/clients/{body['client_id']}")
    assert read.status_code == 200
    assert read.headers["ETag"]
    assert read.headers["Cache-Control"] == "no-store"
    assert {k: v for k, v in body.items() if k != "client_secret"} == read.json

    listed = admin_api.get("/clients")
    assert body["client_id"] in [c["client_id"] for c in listed.json["items"]]


def test_a_public_client_has_no_secret(admin_api: Api) -> None:
    body = created(
        admin_api,
        {
            "name": "CLI tool",
            "redirect_uris": ["http://127.0.0.1:8400/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert body["client_secret"] is None
    assert body["token_endpoint_auth_method"] == "none"
    rotated = admin_api.post(f"/clients/{body['client_id']}/secret")
    assert "does not authenticate with a secret" in assert_problem(rotated, 400)["detail"]


def test_AUTHZ_10_client_secret_is_shown_once(app: Flask, admin_api: Api) -> None:
    """The secret is in the registration's answer only: no read, list or audit record
    holds it or its hash, and it authenticates the client."""
    from identity.random_tokens import token_hash

    body = created(admin_api, SERVICE)
    secret = body["client_secret"]
    assert token_for(app, body["client_id"], secret).status_code == 200
    read = admin_api.get(f"/clients/{body['client_id']}")
    listed = admin_api.get("/clients")
    for response in (read, listed):
        text = response.get_data(as_text=True)
        assert secret not in text and token_hash(secret) not in text
    assert not {k for k in read.json if "secret" in k or "hash" in k}


def test_AUTHZ_10_rotating_the_secret_shows_the_new_one_once(app: Flask, admin_api: Api) -> None:
    """A rotated secret is shown in the rotation's answer only; the old one stops
    authenticating the client at the token endpoint at once."""
    body = created(admin_api, SERVICE)
    client_id, old = body["client_id"], body["client_secret"]
    published = generation(app, "clients")
    rotated = admin_api.post(f"/clients/{client_id}/secret")
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["client_secret"]
    assert rotated.json["client_id"] == client_id and new and new != old
    assert generation(app, "clients") > published
    refused = token_for(app, client_id, old)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert token_for(app, client_id, new).status_code == 200
    assert new not in admin_api.get(f"/clients/{client_id}").get_data(as_text=True)
    assert audit_events(app, "client.secret_rotated")[-1].client_id == client_id


def test_LOG_02_no_client_secret_in_the_audit_trail_or_the_logs(
    app: Flask, admin_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Registering a client and rotating its secret are audited without the secret."""
    caplog.set_level(logging.INFO)
    body = created(admin_api, SERVICE)
    rotated = admin_api.post(f"/clients/{body['client_id']}/secret").json["client_secret"]
    trail = admin_api.get("/audit-events", query_string={"limit": 200})
    assert trail.status_code == 200
    events = {e["event"] for e in trail.json["items"]}
    assert {"client.create", "client.secret_rotated"} <= events
    for secret in (body["client_secret"], rotated):
        assert secret not in trail.get_data(as_text=True)
        assert secret not in caplog.text


def test_change_a_client_with_if_match(app: Flask, admin_api: Api) -> None:
    """PATCH changes what `identity clients update` changes, only against the ETag read:
    428 without If-Match, 412 with an old one; the change is published and audited."""
    body = created(admin_api)
    path = f"/clients/{body['client_id']}"
    change = {
        "name": "Shop 2",
        "redirect_uris": ["https://shop.example/cb", "http://127.0.0.1:8400/cb"],
        "post_logout_redirect_uris": [],
        "scope": "openid email",
        "first_party": True,
    }
    assert_problem(admin_api.patch(path, json=change), 428)
    stale = '"' + "0" * 32 + '"'
    assert_problem(admin_api.patch(path, json=change, headers={"If-Match": stale}), 412)
    assert admin_api.get(path).json["name"] == "Shop"

    etag = admin_api.get(path).headers["ETag"]
    published = generation(app, "clients")
    changed = admin_api.patch(path, json=change, headers={"If-Match": etag})
    assert changed.status_code == 200, changed.json
    assert changed.headers["ETag"] != etag
    read = admin_api.get(path)
    assert read.json == changed.json
    assert read.headers["ETag"] == changed.headers["ETag"]
    assert read.json["name"] == "Shop 2" and read.json["first_party"] is True
    assert read.json["redirect_uris"] == change["redirect_uris"]
    assert read.json["post_logout_redirect_uris"] == []
    assert read.json["scope"] == "openid email"
    # What was not asked stays.
    assert read.json["grant_types"] == ["authorization_code", "refresh_token"]
    assert generation(app, "clients") > published
    update = audit_events(app, "client.update")[-1]
    assert update.client_id == body["client_id"]
    assert update.data["changed"] == [
        "client_name",
        "post_logout_redirect_uris",
        "redirect_uris",
        "scope",
        "first_party",
    ]
    # The ETag read before the change is stale now.
    assert_problem(admin_api.patch(path, json={"name": "x"}, headers={"If-Match": etag}), 412)


def test_a_refused_change_changes_nothing(admin_api: Api) -> None:
    body = created(admin_api)
    path = f"/clients/{body['client_id']}"
    etag = admin_api.get(path).headers["ETag"]
    bad = admin_api.patch(
        path, json={"redirect_uris": ["http://shop.example/cb"]}, headers={"If-Match": etag}
    )
    assert "http is only allowed for loopback addresses" in assert_problem(bad, 400)["detail"]
    assert admin_api.get(path).headers["ETag"] == etag


def test_delete_a_client(app: Flask, admin_api: Api) -> None:
    body = created(admin_api, SERVICE)
    deleted = admin_api.delete(f"/clients/{body['client_id']}")
    assert deleted.status_code == 204 and deleted.data == b""
    assert_problem(admin_api.get(f"/clients/{body['client_id']}"), 404)
    assert token_for(app, body["client_id"], body["client_secret"]).status_code == 401
    assert audit_events(app, "client.delete")[-1].client_id == body["client_id"]


def test_pages_hold_every_client_exactly_once(admin_api: Api) -> None:
    """Cursor pagination by client_id: each client on exactly one page, in order."""
    ids = {created(admin_api, {**SERVICE, "name": f"Service {n}"})["client_id"] for n in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = admin_api.get("/clients", query_string=query)
        assert page.status_code == 200, page.json
        assert len(page.json["items"]) <= 2
        seen += [c["client_id"] for c in page.json["items"]]
        pages += 1
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert ids <= set(seen)  # and the callers' own clients
    assert pages == -(-len(seen) // 2)
    assert_problem(admin_api.get("/clients", query_string={"cursor": "not a cursor!"}), 400)
    assert_problem(admin_api.get("/clients", query_string={"limit": 0}), 422)


# -- application permissions ------------------------------------------------------------


def test_declare_list_and_remove_permissions(app: Flask, admin_api: Api) -> None:
    body = created(admin_api, SERVICE)
    base = f"/clients/{body['client_id']}/permissions"
    published = generation(app, "clients")
    put = admin_api.put(f"{base}/invoices:read", json={"description": "Read", "in_token": True})
    assert put.status_code == 200, put.json
    assert put.json == {"name": "invoices:read", "description": "Read", "in_token": True}
    assert generation(app, "clients") > published
    again = admin_api.put(f"{base}/invoices:read", json={"description": "Read them"})
    assert again.json == {"name": "invoices:read", "description": "Read them", "in_token": False}
    admin_api.put(f"{base}/invoices:approve", json={})
    listed = admin_api.get(base)
    assert [p["name"] for p in listed.json["items"]] == ["invoices:approve", "invoices:read"]
    assert admin_api.delete(f"{base}/invoices:read").status_code == 204
    assert [p["name"] for p in admin_api.get(base).json["items"]] == ["invoices:approve"]
    assert_problem(admin_api.delete(f"{base}/invoices:read"), 404)
    bad = admin_api.put(f"{base}/Invoices", json={})
    assert "not a permission name" in assert_problem(bad, 400)["detail"]


def test_declared_permission_in_token_reaches_the_access_token(app: Flask, admin_api: Api) -> None:
    """A permission declared with in_token is in the permissions claim of the client's
    access tokens when its service account holds it; one it does not hold, or one
    declared without in_token, is not."""
    role = admin_api.post(
        "/roles",
        json={"name": "invoice-reader", "permissions": ["invoices:read", "invoices:export"]},
    )
    assert role.status_code == 201, role.json
    body = created(admin_api, {**SERVICE, "roles": ["invoice-reader"]})
    assert body["roles"] == ["invoice-reader"]
    base = f"/clients/{body['client_id']}/permissions"
    before = token_for(app, body["client_id"], body["client_secret"])
    assert "permissions" not in claims(before.json["access_token"])
    admin_api.put(f"{base}/invoices:read", json={"in_token": True})
    admin_api.put(f"{base}/invoices:export", json={"in_token": False})
    admin_api.put(f"{base}/invoices:approve", json={"in_token": True})
    response = token_for(app, body["client_id"], body["client_secret"])
    assert response.status_code == 200, response.json
    token = claims(response.json["access_token"])
    assert token["permissions"] == ["invoices:read"]
    assert token["roles"] == ["invoice-reader"]


# -- refusals ---------------------------------------------------------------------------


def on(path: str, client_id: str) -> str:
    return path.replace("CID", client_id)


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
def test_AUTHZ_01_no_token_is_401(
    app: Flask, registered: RegisteredClient, method: str, path: str, body: Any
) -> None:
    anonymous = Api(app.test_client(), None)
    response = anonymous.call(method, on(path, registered.client_id), json=body)
    assert assert_problem(response, 401)["type"] == "urn:identity:problem:unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "client_id" not in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_AUTHZ_02_auditor_reads_clients_but_changes_nothing(
    app: Flask,
    service_account: Callable[..., Api],
    registered: RegisteredClient,
    method: str,
    path: str,
    body: Any,
) -> None:
    """The auditor role reads clients (clients:read) and is refused every change."""
    auditor = service_account("auditor")
    assert auditor.get("/clients").status_code == 200
    assert auditor.get(f"/clients/{registered.client_id}").status_code == 200
    response = auditor.call(method, on(path, registered.client_id), json=body)
    problem = assert_problem(response, 403)
    assert problem["missing"] == "clients:write"
    assert auditor.get(f"/clients/{registered.client_id}").json["name"] == "Relying Party"


def test_AUTHZ_05_roles_for_a_new_client_need_roles_assign_and_what_they_hold(
    admin_api: Api, service_account: Callable[..., Api]
) -> None:
    """Giving the new client's service account roles needs roles:assign besides
    clients:write, and only roles whose permissions the caller holds: nobody makes a
    client more privileged than themselves."""
    admin_api.post("/roles", json={"name": "client-writer", "permissions": ["clients:write"]})
    admin_api.post(
        "/roles",
        json={"name": "client-admin", "permissions": ["clients:write", "roles:assign"]},
    )
    writer = service_account("client-writer", name="writer")
    refused = writer.post("/clients", json={**SERVICE, "roles": ["client-writer"]})
    assert assert_problem(refused, 403)["missing"] == "roles:assign"
    assert writer.post("/clients", json=SERVICE).status_code == 201

    manager = service_account("client-admin", name="manager")
    escalation = manager.post("/clients", json={**SERVICE, "roles": ["admin"]})
    assert "cannot grant what you do not hold" in assert_problem(escalation, 403)["detail"]
    names = {c["name"] for c in admin_api.get("/clients").json["items"]}
    assert names == {"ops", "writer", "manager", "Billing service"}  # one, from writer
    fine = manager.post("/clients", json={**SERVICE, "roles": ["client-writer"]})
    assert fine.status_code == 201 and fine.json["roles"] == ["client-writer"]
    unknown = admin_api.post("/clients", json={**SERVICE, "roles": ["no-such-role"]})
    assert "unknown role: no-such-role" in assert_problem(unknown, 400)["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/clients/nope"),
        ("PATCH", "/clients/nope"),
        ("DELETE", "/clients/nope"),
        ("POST", "/clients/nope/secret"),
        ("GET", "/clients/nope/permissions"),
        ("PUT", "/clients/nope/permissions/invoices:read"),
        ("DELETE", "/clients/nope/permissions/invoices:read"),
    ],
)
def test_unknown_client_is_404(admin_api: Api, method: str, path: str) -> None:
    body: dict[str, Any] | None = {} if method in ("PATCH", "PUT") else None
    response = admin_api.call(method, path, json=body, headers={"If-Match": "*"})
    assert "no client 'nope'" in assert_problem(response, 404)["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SERVICE, "client_secret": "chosen-by-me"}, "body.client_secret"),
        ({**SERVICE, "client_id": "my-own-id"}, "body.client_id"),
        ({**SERVICE, "registered_via": "dynamic"}, "body.registered_via"),
        ({**SERVICE, "client_secret_hash": "0" * 64}, "body.client_secret_hash"),
    ],
)
def test_AUTHZ_04_unknown_fields_are_refused_on_create(
    admin_api: Api, body: dict[str, Any], field: str
) -> None:
    """Fields outside the schema (an id, a secret of one's choosing, ...) are refused with
    a 422 naming them, and no client is registered."""
    before = len(admin_api.get("/clients").json["items"])
    problem = assert_problem(admin_api.post("/clients", json=body), 422)
    assert field in [e["field"] for e in problem["errors"]]
    assert len(admin_api.get("/clients").json["items"]) == before


@pytest.mark.parametrize(
    "change",
    [{"resource_server": True}, {"client_id": "other"}, {"token_endpoint_auth_method": "none"}],
)
def test_AUTHZ_04_a_change_cannot_reach_other_fields(
    admin_api: Api, change: dict[str, Any]
) -> None:
    """PATCH takes only the fields `identity clients update` changes: trust flags, the id
    and how the client authenticates are refused (422), and nothing changes."""
    body = created(admin_api)
    path = f"/clients/{body['client_id']}"
    etag = admin_api.get(path).headers["ETag"]
    problem = assert_problem(admin_api.patch(path, json=change, headers={"If-Match": etag}), 422)
    assert [e["field"] for e in problem["errors"]] == [f"body.{next(iter(change))}"]
    assert admin_api.get(path).headers["ETag"] == etag


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"redirect_uris": ["http://shop.example/cb"]}, "http is only allowed for loopback"),
        ({"redirect_uris": ["https://*.shop.example/cb"]}, "wildcards are not allowed"),
        ({"redirect_uris": ["https://shop.example/cb#x"]}, "must not contain a fragment"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "scheme not allowed"),
        ({"grant_types": ["password"]}, "unsupported grant_types: password"),
        ({"grant_types": ["implicit"]}, "unsupported grant_types: implicit"),
        ({"response_types": ["token"]}, "only the 'code' response type"),
        ({"scope": "openid bogus"}, "unknown scopes: bogus"),
        ({"redirect_uris": []}, "needs at least one redirect URI"),
    ],
)
def test_AUTHZ_11_bad_metadata_is_refused(
    admin_api: Api, change: dict[str, Any], detail: str
) -> None:
    """The API registers only what `identity clients create` would: http (off loopback),
    wildcard and script redirect URIs, the password and implicit grants and unknown
    scopes are refused with a 400 problem saying why."""
    response = admin_api.post("/clients", json={**WEB_APP, **change})
    problem = assert_problem(response, 400)
    assert detail in problem["detail"]
    assert problem["type"].startswith("urn:identity:problem:invalid_")


def test_a_body_that_is_not_json_is_refused(admin_api: Api) -> None:
    response = admin_api.post("/clients", data="name=x")
    assert "JSON" in assert_problem(response, 400)["detail"]
