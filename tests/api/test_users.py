"""/api/v1/users: search, create, read, change, disable, enable and delete accounts."""

# ruff: noqa: F811 - the fixtures of tests/oauth/conftest.py, imported, are test arguments
from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.api.conftest import Api
from tests.conftest import PASSWORD, Mailbox, sign_in
from tests.oauth.conftest import Flow, flow, rp, token_request  # noqa: F401 - fixtures

STRONG = "a perfectly long passphrase 42"


def problem(response: Any, status: int) -> dict[str, Any]:
    """The body of an RFC 9457 answer with this status."""
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.json
    assert body["status"] == status
    return body


def error_fields(response: Any) -> set[str]:
    return {e["field"] for e in problem(response, 422)["errors"]}


@pytest.fixture
def anonymous(app: Flask) -> Api:
    return Api(app.test_client(), None)


@pytest.fixture
def auditor(service_account: Callable[..., Api]) -> Api:
    """Reads everything, changes nothing."""
    return service_account("auditor", name="auditor")


@pytest.fixture
def keys_reader(admin_api: Api, service_account: Callable[..., Api]) -> Api:
    """Holds an identity permission (so it gets a token), but nothing about users."""
    created = admin_api.post("/roles", json={"name": "keys-reader", "permissions": ["keys:read"]})
    assert created.status_code == 201, created.json
    return service_account("keys-reader", name="keys")


@pytest.fixture
def user_manager(admin_api: Api, service_account: Callable[..., Api]) -> Api:
    return service_account("user-manager", name="manager")


def etag_of(api: Api, user_id: Any) -> str:
    response = api.get(f"/users/{user_id}")
    assert response.status_code == 200, response.json
    return str(response.headers["ETag"])


def audit_events(app: Flask, event: str) -> list[Any]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.seq)
        return list(db.session.execute(query).scalars())


# -- search --------------------------------------------------------------------------------


def test_search_filters_combine(app: Flask, admin_api: Api, make_user: Any) -> None:
    alice = make_user("alice@example.org", name="Alice Liddell")
    bob = make_user("bob@example.org", verified=False)
    carol = make_user("carol@example.org")
    dave = make_user("dave@example.org", roles=("user-manager",))
    erin = make_user("erin@example.org", name="Erin 100%_done")
    assert admin_api.post(f"/users/{carol}/disable").status_code == 200
    assert admin_api.post("/groups", json={"name": "staff"}).status_code == 201
    assert admin_api.put(f"/groups/staff/members/{erin}").status_code == 204

    def ids(**query: str) -> list[str]:
        response = admin_api.get("/users", query_string=query)
        assert response.status_code == 200, response.json
        return [u["id"] for u in response.json["items"]]

    assert ids() == [str(u) for u in (alice, bob, carol, dave, erin)]
    assert ids(q="LIDDELL") == [str(alice)]
    assert ids(q="b@EXAMPLE") == [str(bob)]
    assert ids(q="%_") == [str(erin)]  # wildcards are searched for, not used
    assert ids(email="Alice@Example.ORG") == [str(alice)]
    assert ids(email="alice@example.com") == []
    assert ids(verified="false") == [str(bob)]
    assert ids(disabled="true") == [str(carol)]
    assert ids(disabled="false", verified="true") == [str(u) for u in (alice, dave, erin)]
    assert ids(role="user-manager") == [str(dave)]
    assert ids(group="staff") == [str(erin)]
    assert ids(group="staff", q="alice") == []

    [first] = admin_api.get("/users", query_string={"email": "dave@example.org"}).json["items"]
    assert first["roles"] == ["user-manager"]
    assert first["email_verified"] is True and first["disabled"] is False
    assert set(first) == {
        "id",
        "email",
        "name",
        "email_verified",
        "disabled",
        "created_at",
        "updated_at",
        "last_sign_in_at",
        "roles",
    }
    problem(admin_api.get("/users", query_string={"role": "nope"}), 404)


def test_search_pages_through_five_users_each_exactly_once(admin_api: Api, make_user: Any) -> None:
    emails = [f"user{n}@example.org" for n in (3, 1, 4, 0, 2)]
    for email in emails:
        make_user(email)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = admin_api.get("/users", query_string=query)
        assert response.status_code == 200, response.json
        pages += 1
        assert len(response.json["items"]) <= 2
        seen += [u["email"] for u in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(emails)


def test_search_refuses_bad_input(admin_api: Api) -> None:
    assert (
        "cursor is not valid"
        in problem(admin_api.get("/users", query_string={"cursor": "not-a-cursor!"}), 400)["detail"]
    )
    # A NUL character inside the cursor's JSON: refused before the database sees it.
    nul = base64.urlsafe_b64encode(b'["a\\u0000b"]').decode()
    assert "cursor is not valid" in problem(admin_api.get(f"/users?cursor={nul}"), 400)["detail"]
    assert "cursor is not valid" in problem(admin_api.get(f"/clients?cursor={nul}"), 400)["detail"]
    assert error_fields(admin_api.get("/users", query_string={"is_admin": "1"})) == {
        "query.is_admin"
    }
    assert error_fields(admin_api.get("/users", query_string={"limit": "0"})) == {"query.limit"}
    assert error_fields(admin_api.get("/users", query_string={"disabled": "maybe"})) == {
        "query.disabled"
    }


def test_search_needs_a_token_and_users_read(
    anonymous: Api, keys_reader: Api, auditor: Api
) -> None:
    problem(anonymous.get("/users"), 401)
    assert problem(keys_reader.get("/users"), 403)["missing"] == "users:read"
    assert auditor.get("/users").status_code == 200


# -- create --------------------------------------------------------------------------------


def test_create_a_user_who_can_then_sign_in(app: Flask, admin_api: Api) -> None:
    created = admin_api.post(
        "/users",
        json={
            "email": " Zoe@Example.ORG ",
            "name": "Zoe",
            "password": STRONG,
            "email_verified": True,
            "roles": ["auditor"],
        },
    )
    assert created.status_code == 201, created.json
    assert created.headers["ETag"]
    body = created.json
    assert body["email"] == "zoe@example.org" and body["name"] == "Zoe"
    assert body["email_verified"] is True and body["roles"] == ["auditor"]
    read = admin_api.get(f"/users/{body['id']}")
    assert read.json == body and read.headers["ETag"] == created.headers["ETag"]
    assert sign_in(app.test_client(), "zoe@example.org", STRONG).status_code == 303
    [event] = audit_events(app, "user.create")
    assert str(event.subject_id) == body["id"] and event.client_id


def test_without_a_password_the_user_is_mailed_a_link_to_choose_one(
    app: Flask, admin_api: Api, mailbox: Mailbox
) -> None:
    created = admin_api.post("/users", json={"email": "yan@example.org"})
    assert created.status_code == 201, created.json
    assert created.json["email_verified"] is False and created.json["roles"] == []
    assert mailbox.last_link("yan@example.org").startswith("/reset-password/")


def test_create_refuses_a_taken_address_and_a_weak_password(admin_api: Api, make_user: Any) -> None:
    make_user("alice@example.org")
    taken = admin_api.post("/users", json={"email": "ALICE@example.org", "password": STRONG})
    assert "already exists" in problem(taken, 409)["detail"]
    problem(admin_api.post("/users", json={"email": "new@example.org", "password": "short"}), 400)
    assert error_fields(admin_api.post("/users", json={"email": "not an address"})) == {
        "body.email"
    }
    assert error_fields(admin_api.post("/users", json={"name": "x"})) == {"body.email"}


def test_AUTHZ_04_create_refuses_fields_it_does_not_know(admin_api: Api) -> None:
    response = admin_api.post(
        "/users",
        json={"email": "mallory@example.org", "password": STRONG, "is_admin": True, "id": "x"},
    )
    assert error_fields(response) == {"body.is_admin", "body.id"}
    assert admin_api.get("/users", query_string={"q": "mallory"}).json["items"] == []


def test_INPUT_12_json_of_the_wrong_type_is_a_validation_problem(admin_api: Api) -> None:
    wrong = {"email": 5, "name": ["x"], "email_verified": "perhaps", "roles": "admin"}
    assert error_fields(admin_api.post("/users", json=wrong)) == {
        "body.email",
        "body.name",
        "body.email_verified",
        "body.roles",
    }
    assert error_fields(admin_api.post("/users", json=["alice@example.org"])) == {"body"}
    problem(admin_api.post("/users", data="{not json", content_type="application/json"), 400)
    problem(admin_api.post("/users", data="email=a@example.org"), 400)
    assert admin_api.get("/users").json["items"] == []


def test_create_needs_a_token_users_write_and_for_roles_roles_assign(
    admin_api: Api, service_account: Callable[..., Api], anonymous: Api, auditor: Api
) -> None:
    new = {"email": "new@example.org", "password": STRONG}
    problem(anonymous.post("/users", json=new), 401)
    assert problem(auditor.post("/users", json=new), 403)["missing"] == "users:write"
    role = {"name": "creator", "permissions": ["users:*"]}
    assert admin_api.post("/roles", json=role).status_code == 201
    creator = service_account("creator", name="creator")
    refused = creator.post("/users", json={**new, "roles": ["auditor"]})
    assert problem(refused, 403)["missing"] == "roles:assign"
    assert admin_api.get("/users", query_string={"q": "new@"}).json["items"] == []
    assert creator.post("/users", json=new).status_code == 201


def test_AUTHZ_05_create_gives_only_roles_the_caller_holds(
    admin_api: Api, user_manager: Api
) -> None:
    new = {"email": "new@example.org", "password": STRONG}
    refused = user_manager.post("/users", json={**new, "roles": ["admin"]})
    assert "do not hold" in problem(refused, 403)["detail"]
    assert admin_api.get("/users", query_string={"q": "new@"}).json["items"] == []
    created = user_manager.post("/users", json={**new, "roles": ["user-manager"]})
    assert created.status_code == 201 and created.json["roles"] == ["user-manager"]


# -- read ----------------------------------------------------------------------------------


def test_read_a_user(
    admin_api: Api, anonymous: Api, keys_reader: Api, auditor: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    response = auditor.get(f"/users/{alice}")
    assert response.status_code == 200 and response.json["email"] == "alice@example.org"
    assert response.headers["ETag"].startswith('"')
    assert "password_hash" not in response.json
    problem(anonymous.get(f"/users/{alice}"), 401)
    problem(keys_reader.get(f"/users/{alice}"), 403)
    assert "no user" in problem(admin_api.get(f"/users/{uuid.uuid4()}"), 404)["detail"]
    assert admin_api.get("/users/not-a-uuid").status_code == 404  # no route matches


# -- change --------------------------------------------------------------------------------


def test_change_needs_the_current_etag(admin_api: Api, make_user: Any) -> None:
    alice = make_user("alice@example.org", name="Alice")
    path = f"/users/{alice}"
    problem(admin_api.patch(path, json={"name": "Alicia"}), 428)
    tag = etag_of(admin_api, alice)
    changed = admin_api.patch(path, json={"name": "Alicia"}, headers={"If-Match": tag})
    assert changed.status_code == 200, changed.json
    assert changed.json["name"] == "Alicia" and changed.headers["ETag"] != tag
    stale = admin_api.patch(path, json={"name": "Ali"}, headers={"If-Match": tag})
    problem(stale, 412)
    assert admin_api.get(path).json["name"] == "Alicia"
    removed = admin_api.patch(
        path, json={"name": None}, headers={"If-Match": changed.headers["ETag"]}
    )
    assert removed.json["name"] is None


def test_an_operator_changes_the_email_without_a_confirmation_mail(
    app: Flask, admin_api: Api, make_user: Any, mailbox: Mailbox
) -> None:
    alice = make_user("alice@example.org")
    make_user("bob@example.org")
    path = f"/users/{alice}"
    moved = admin_api.patch(
        path, json={"email": "Alice@New.example"}, headers={"If-Match": etag_of(admin_api, alice)}
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["email"] == "alice@new.example"
    assert moved.json["email_verified"] is False  # nobody proved the new address yet
    assert mailbox.messages == []
    verified = admin_api.patch(
        path,
        json={"email": "alice@other.example", "email_verified": True},
        headers={"If-Match": moved.headers["ETag"]},
    )
    assert verified.json["email"] == "alice@other.example" and verified.json["email_verified"]
    assert sign_in(app.test_client(), "alice@other.example", PASSWORD).status_code == 303
    # Signing in changed last_sign_in_at, and so the ETag.
    problem(admin_api.patch(path, json={}, headers={"If-Match": verified.headers["ETag"]}), 412)
    taken = admin_api.patch(
        path, json={"email": "bob@example.org"}, headers={"If-Match": etag_of(admin_api, alice)}
    )
    problem(taken, 409)
    [event, _] = audit_events(app, "user.updated")
    # That the address changed, not the addresses: audit data is logged too (LOG-02).
    assert event.data["changed"]["email"] is True
    assert "alice@" not in str(event.data)


def test_AUTHZ_04_change_refuses_roles_and_other_fields(admin_api: Api, make_user: Any) -> None:
    alice = make_user("alice@example.org")
    headers = {"If-Match": etag_of(admin_api, alice)}
    for field in ("roles", "disabled", "password", "id", "created_at"):
        response = admin_api.patch(f"/users/{alice}", json={field: ["admin"]}, headers=headers)
        assert error_fields(response) == {f"body.{field}"}
    assert admin_api.get(f"/users/{alice}").json["roles"] == []


def test_change_needs_a_token_users_write_and_an_existing_user(
    admin_api: Api, anonymous: Api, auditor: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    headers = {"If-Match": etag_of(admin_api, alice)}
    problem(anonymous.patch(f"/users/{alice}", json={"name": "x"}, headers=headers), 401)
    problem(auditor.patch(f"/users/{alice}", json={"name": "x"}, headers=headers), 403)
    problem(admin_api.patch(f"/users/{uuid.uuid4()}", json={"name": "x"}, headers=headers), 404)


# -- disable, enable, delete ---------------------------------------------------------------


def test_disabling_ends_sessions_and_tokens_at_once(
    app: Flask, admin_api: Api, flow: Flow, rp: Any, client: Any, user: uuid.UUID
) -> None:
    params, verifier = flow.authorize(rp)
    tokens = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/account").status_code == 200
    assert client.get("/userinfo", headers=bearer).status_code == 200

    disabled = admin_api.post(f"/users/{user}/disable")
    assert disabled.status_code == 200, disabled.json
    assert disabled.json["disabled"] is True

    assert client.get("/account").status_code == 302  # signed out
    assert client.get("/userinfo", headers=bearer).status_code == 401
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    assert admin_api.get(f"/users/{user}/sessions").json["items"] == []
    assert sign_in(app.test_client()).status_code != 303

    enabled = admin_api.post(f"/users/{user}/enable")
    assert enabled.status_code == 200 and enabled.json["disabled"] is False
    assert sign_in(app.test_client()).status_code == 303
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400  # old grants stay ended
    [event] = audit_events(app, "user.disabled")
    assert event.subject_id == user and event.client_id


def test_disable_enable_and_delete_need_a_token_users_write_and_a_user(
    admin_api: Api, anonymous: Api, auditor: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    for action in ("disable", "enable"):
        problem(anonymous.post(f"/users/{alice}/{action}"), 401)
        problem(auditor.post(f"/users/{alice}/{action}"), 403)
        problem(admin_api.post(f"/users/{uuid.uuid4()}/{action}"), 404)
    problem(anonymous.delete(f"/users/{alice}"), 401)
    problem(auditor.delete(f"/users/{alice}"), 403)
    problem(admin_api.delete(f"/users/{uuid.uuid4()}"), 404)
    assert admin_api.get(f"/users/{alice}").json["disabled"] is False


def test_deleting_a_user(app: Flask, admin_api: Api, make_user: Any) -> None:
    alice = make_user("alice@example.org")
    client = app.test_client()
    assert sign_in(client).status_code == 303
    deleted = admin_api.delete(f"/users/{alice}")
    assert deleted.status_code == 204 and deleted.data == b""
    problem(admin_api.get(f"/users/{alice}"), 404)
    problem(admin_api.delete(f"/users/{alice}"), 404)
    assert client.get("/account").status_code == 302
    # Deleting is erasing (GDPR-05): the record stays and names no one (not even by the
    # pseudonym, which its receipt in the ledger could lead back to).
    [event] = audit_events(app, "gdpr.erased")
    assert event.subject_id is None and event.subject_ref is None
    assert event.data["requested"] == "operator" and event.data["receipt"]


def test_AUTHZ_08_the_last_active_admin_cannot_be_disabled_or_deleted(
    admin_api: Api, make_user: Any
) -> None:
    """The service account holding admin does not count: only users sign in to the console
    and can set things right."""
    root = make_user("root@example.org", roles=("admin",))
    for refused in (admin_api.post(f"/users/{root}/disable"), admin_api.delete(f"/users/{root}")):
        assert problem(refused, 409)["detail"] == "that would leave no active administrator"
    assert admin_api.get(f"/users/{root}").json["disabled"] is False

    second = make_user("second@example.org", roles=("admin",))
    assert admin_api.post(f"/users/{root}/disable").status_code == 200
    problem(admin_api.post(f"/users/{second}/disable"), 409)
    problem(admin_api.delete(f"/users/{second}"), 409)
    assert admin_api.post(f"/users/{root}/enable").status_code == 200
    assert admin_api.delete(f"/users/{second}").status_code == 204


def test_AUTHZ_02_a_user_manager_cannot_act_on_someone_holding_more(
    admin_api: Api, user_manager: Api, make_user: Any
) -> None:
    """Changing, disabling, enabling or deleting a user who holds a permission the caller
    does not hold is refused, whatever else allows it: here two admins remain either way."""
    root = make_user("root@example.org", roles=("admin",))
    make_user("second@example.org", roles=("admin",))
    plain = make_user("plain@example.org")
    headers = {"If-Match": etag_of(user_manager, root)}
    refusals = [
        user_manager.post(f"/users/{root}/disable"),
        user_manager.post(f"/users/{root}/enable"),
        user_manager.delete(f"/users/{root}"),
        user_manager.patch(f"/users/{root}", json={"email": "me@evil.example"}, headers=headers),
    ]
    for refused in refusals:
        assert "do not hold" in problem(refused, 403)["detail"]
    after = admin_api.get(f"/users/{root}").json
    assert after["email"] == "root@example.org" and after["disabled"] is False

    assert user_manager.post(f"/users/{plain}/disable").status_code == 200
    assert user_manager.post(f"/users/{plain}/enable").status_code == 200
    headers = {"If-Match": etag_of(user_manager, plain)}
    renamed = user_manager.patch(f"/users/{plain}", json={"name": "P"}, headers=headers)
    assert renamed.status_code == 200
    assert user_manager.delete(f"/users/{plain}").status_code == 204


def test_AUTHZ_02_roles_within_one_client_count_too(
    admin_api: Api, user_manager: Api, make_user: Any, rp: Any
) -> None:
    """A role someone has only within one application still outranks the caller there."""
    role = {"name": "billing", "permissions": ["invoices:*"]}
    assert admin_api.post("/roles", json=role).status_code == 201
    alice = make_user("alice@example.org")
    given = admin_api.post(
        "/assignments",
        json={"role": "billing", "user_id": str(alice), "scope_client_id": rp.client_id},
    )
    assert given.status_code == 201, given.json
    assert "invoices:*" in problem(user_manager.post(f"/users/{alice}/disable"), 403)["detail"]
    assert admin_api.post(f"/users/{alice}/disable").status_code == 200
