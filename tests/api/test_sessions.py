"""/api/v1/users/{id}/sessions: an administrator lists a user's login sessions and ends one
or all of them, with the grants bound to them (SESS-06)."""

# ruff: noqa: F811 - imported fixtures are test arguments
from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.conftest import Api
from tests.api.test_users import (  # noqa: F401 - fixtures
    anonymous,
    audit_events,
    auditor,
    keys_reader,
    problem,
)
from tests.conftest import PASSWORD, csrf_token, form_post
from tests.oauth.conftest import Flow, flow, rp, token_request, unverified  # noqa: F401


@pytest.fixture
def app(app_factory: Any) -> Flask:
    # Browser callers here sign in with a password only: the second factor the admin API
    # asks of them by default is tested in tests/admin/test_access.py.
    return app_factory(admin_mfa_required=False)  # type: ignore[no-any-return]


FIELDS = {"id", "created_at", "last_seen_at", "expires_at", "auth_time", "amr", "ip", "user_agent"}


def browser_of(app: Flask, email: str, user_agent: str = "Browser/1.0") -> FlaskClient:
    browser = app.test_client()
    signed_in = form_post(
        browser,
        "/sign-in",
        {"email": email, "password": PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert signed_in.status_code == 303
    return browser


def signed_in(browser: FlaskClient) -> bool:
    return bool(browser.get("/account").status_code == 200)


def sessions_of(api: Api, user_id: Any) -> list[dict[str, Any]]:
    response = api.get(f"/users/{user_id}/sessions")
    assert response.status_code == 200, response.json
    items: list[dict[str, Any]] = response.json["items"]
    return items


def test_SESS_06_an_admin_lists_a_users_sessions_and_ends_one(
    app: Flask, admin_api: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    first = browser_of(app, "alice@example.org", "First/1.0")
    second = browser_of(app, "alice@example.org", "Second/2.0")

    listed = admin_api.get(f"/users/{alice}/sessions")
    items = listed.json["items"]
    assert [item["user_agent"] for item in items] == ["Second/2.0", "First/1.0"]  # newest first
    assert all(set(item) == FIELDS for item in items)
    assert items[0]["amr"] == ["pwd"]
    # Never the cookie, nor the hash stored for it.
    from identity.extensions import db
    from identity.models.session import LoginSession

    with app.app_context():
        hashes = [h for (h,) in db.session.query(LoginSession.id_hash)]
    cookies = [b.get_cookie("identity_session") for b in (first, second)]
    for secret in [*hashes, *(c.value for c in cookies if c is not None)]:
        assert secret not in listed.get_data(as_text=True)

    ended = admin_api.delete(f"/users/{alice}/sessions/{items[0]['id']}")
    assert ended.status_code == 204 and ended.data == b""
    assert not signed_in(second)
    assert signed_in(first)
    assert [item["id"] for item in sessions_of(admin_api, alice)] == [items[1]["id"]]
    problem(admin_api.delete(f"/users/{alice}/sessions/{items[0]['id']}"), 404)

    [event] = audit_events(app, "session.revoked")
    service_client = unverified(str(admin_api.token))[1]["client_id"]
    assert (event.subject_id, event.client_id) == (alice, service_client)
    assert event.data["sessions"] == [items[0]["id"]]


def test_AUTHZ_03_a_session_is_reached_only_through_its_own_user(
    app: Flask, admin_api: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    bob = make_user("bob@example.org")
    browser_of(app, "alice@example.org")
    bobs = browser_of(app, "bob@example.org")
    [bob_session] = sessions_of(admin_api, bob)
    assert bob_session["id"] not in [s["id"] for s in sessions_of(admin_api, alice)]

    problem(admin_api.delete(f"/users/{alice}/sessions/{bob_session['id']}"), 404)
    assert signed_in(bobs)
    assert sessions_of(admin_api, bob) == [bob_session]
    assert audit_events(app, "session.revoked") == []


def test_SESS_06_ending_all_sessions_ends_the_grants_bound_to_them(
    app: Flask, admin_api: Api, flow: Flow, rp: Any, client: FlaskClient, user: uuid.UUID
) -> None:
    params, verifier = flow.authorize(rp)  # signs alice in, in `client`
    tokens = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    other = browser_of(app, "alice@example.org")
    assert len(sessions_of(admin_api, user)) == 2

    ended = admin_api.delete(f"/users/{user}/sessions")
    assert ended.status_code == 204, ended.json
    assert not signed_in(client) and not signed_in(other)
    assert sessions_of(admin_api, user) == []
    assert client.get("/userinfo", headers=bearer).status_code == 401
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    assert admin_api.get(f"/users/{user}").json["disabled"] is False  # only the sessions end
    [event] = audit_events(app, "session.revoked_all")
    assert event.subject_id == user and len(event.data["sessions"]) == 2
    assert admin_api.delete(f"/users/{user}/sessions").status_code == 204  # none left: fine


def test_SESS_06_an_admin_in_the_console_is_audited_as_the_actor(
    app: Flask, make_user: Any, admin_api: Api
) -> None:
    root = make_user("root@example.org", roles=("admin",))
    alice = make_user("alice@example.org")
    # make_user committed outside a request: this process's RBAC cache learns it now.
    app.extensions["identity"].rbac.invalidate()
    browser_of(app, "alice@example.org")
    console = browser_of(app, "root@example.org")
    [session] = console.get(f"/api/v1/users/{alice}/sessions").json["items"]

    # The API only reads from a browser: ending the session is the console's, which
    # records the admin as the actor all the same.
    path = f"/api/v1/users/{alice}/sessions/{session['id']}"
    token = csrf_token(console.get("/account/name").data)
    problem(console.delete(path, headers={"X-CSRF-Token": token}), 403)
    page = console.get("/admin/sessions")
    end = f"/admin/sessions/{alice}/{session['id']}/end"
    assert end in page.text
    assert console.post(end, data={"csrf_token": csrf_token(page.data)}).status_code == 303
    [event] = audit_events(app, "session.revoked")
    assert (event.actor_id, event.subject_id) == (root, alice)


def test_sessions_need_a_token_the_permission_and_a_user(
    app: Flask,
    admin_api: Api,
    anonymous: Api,
    auditor: Api,
    keys_reader: Api,
    make_user: Any,
) -> None:
    alice = make_user("alice@example.org")
    browser = browser_of(app, "alice@example.org")
    [session] = sessions_of(admin_api, alice)
    one, all_ = f"/users/{alice}/sessions/{session['id']}", f"/users/{alice}/sessions"

    problem(anonymous.get(all_), 401)
    problem(anonymous.delete(one), 401)
    problem(anonymous.delete(all_), 401)
    assert problem(keys_reader.get(all_), 403)["missing"] == "sessions:read"
    assert sessions_of(auditor, alice) == [session]
    assert problem(auditor.delete(one), 403)["missing"] == "sessions:revoke"
    assert problem(auditor.delete(all_), 403)["missing"] == "sessions:revoke"
    assert signed_in(browser)

    nobody = uuid.uuid4()
    problem(admin_api.get(f"/users/{nobody}/sessions"), 404)
    problem(admin_api.delete(f"/users/{nobody}/sessions"), 404)
    problem(admin_api.delete(f"/users/{nobody}/sessions/{session['id']}"), 404)
    problem(admin_api.delete(f"/users/{alice}/sessions/no-such-session"), 404)
    assert signed_in(browser)
