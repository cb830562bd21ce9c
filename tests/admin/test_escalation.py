"""A change that would give someone every permission waits for a fresh proof (AUTHZ-13),
whichever page it comes from and whatever name the role has: a member added to a group
that holds admin, a role made to inherit admin, a role that inherits admin given to a user,
a client registered with the admin role. Without the proof nothing changes and a
confirmation page carries the form on; with it the change is made."""

from __future__ import annotations

import html
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.admin.conftest import REAUTH, submit
from tests.conftest import csrf_token
from tests.functional.conftest import audit_events


def rbac_setup(app: Flask, *steps: Any) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        for step in steps:
            step(db.session, rbac)
        db.session.commit()
    app.extensions["identity"].rbac.invalidate()


def is_admin(app: Flask, email: str) -> bool:
    from identity.extensions import db
    from identity.models.user import User
    from identity.rbac.policy import check
    from identity.rbac.store import load_snapshot

    with app.app_context():
        user = db.session.query(User).filter_by(email=email).one()
        return check(load_snapshot(db.session), "user", user.id, "*").allowed


def carried(page: str) -> dict[str, list[str]]:
    """The hidden fields the confirmation page posts on (the form as it was sent)."""
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page):
        fields.setdefault(name, []).append(html.unescape(value))
    return fields


def confirm(client: FlaskClient, page: Any, answer: str) -> Any:
    action = re.search(r'<form method="post" action="([^"]+)" class="sensitive">', page.text)
    assert action, page.text
    data: dict[str, Any] = {**carried(page.text), "reauth": answer}
    data["csrf_token"] = csrf_token(page.text)
    return client.post(html.unescape(action.group(1)), data=data)


def test_AUTHZ_13_a_member_added_to_an_admin_group_waits_for_a_proof(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    make_user("bob@example.org")

    def ops(session: Any, rbac: Any) -> None:
        group = rbac.create_group(session, "ops")
        rbac.assign(session, rbac.role_by_name(session, "admin"), rbac.Principal("group", group.id))

    rbac_setup(app, ops)
    page = submit(admin, "/admin/groups/ops", "/admin/groups/ops/members", email="bob@example.org")
    assert page.status_code == 200
    assert "Confirm: every permission" in page.text
    assert "the user bob@example.org" in page.text
    assert not is_admin(app, "bob@example.org")
    assert "added to ops" not in admin.get("/admin/groups/ops").text  # no stale flash

    wrong = confirm(admin, page, "not my password")
    assert wrong.status_code == 400 and not is_admin(app, "bob@example.org")
    assert audit_events(app, "user.reauthentication")[-1]["outcome"] == "failure"

    done = confirm(admin, page, REAUTH["reauth"])
    assert done.status_code == 303
    assert is_admin(app, "bob@example.org")


def test_AUTHZ_13_a_role_inheriting_admin_given_to_a_user_waits_for_a_proof(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    target = make_user("cy@example.org")
    rbac_setup(
        app,
        lambda s, rbac: rbac.create_role(s, "super", parents=["admin"]),
    )
    page = submit(admin, f"/admin/users/{target}", f"/admin/users/{target}/roles", role="super")
    assert page.status_code == 200 and "the user cy@example.org" in page.text
    assert not is_admin(app, "cy@example.org")
    assert confirm(admin, page, REAUTH["reauth"]).status_code == 303
    assert is_admin(app, "cy@example.org")


def test_AUTHZ_13_making_a_role_inherit_admin_waits_for_a_proof(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    def helper(session: Any, rbac: Any) -> None:
        role = rbac.create_role(session, "helper", permissions=["users:read"])
        user = session.query(rbac.User).filter_by(email="di@example.org").one()
        rbac.assign(session, role, rbac.Principal("user", user.id))

    make_user("di@example.org")
    rbac_setup(app, helper)
    shown = admin.get("/admin/roles/helper").text
    version = re.search(r'name="version" value="([^"]+)"', shown)
    assert version
    page = admin.post(
        "/admin/roles/helper/edit",
        data={
            "csrf_token": csrf_token(shown),
            "version": html.unescape(version.group(1)),
            "description": "",
            "permission": "users:read",
            "parent": "admin",
        },
    )
    assert page.status_code == 200 and "the user di@example.org" in page.text
    assert not is_admin(app, "di@example.org")
    assert confirm(admin, page, REAUTH["reauth"]).status_code == 303
    assert is_admin(app, "di@example.org")


def test_AUTHZ_13_a_client_registered_with_the_admin_role_waits_for_a_proof(
    app: Flask, admin: FlaskClient
) -> None:
    from identity.extensions import db
    from identity.models.oauth import Client

    form = {
        "name": "Robot",
        "redirect_uris": "",
        "grant_types": ["client_credentials"],
        "scope": "",
        "token_endpoint_auth_method": "client_secret_basic",
        "id_token_signed_response_alg": "",
        "roles": "admin",
    }
    page = submit(admin, "/admin/clients/new", **form)
    assert page.status_code == 200, page.text
    assert "the service account of" in page.text
    with app.app_context():
        assert db.session.query(Client).filter_by(name="Robot").count() == 0
    done = confirm(admin, page, REAUTH["reauth"])
    assert done.status_code == 201, done.text
    with app.app_context():
        assert db.session.query(Client).filter_by(name="Robot").count() == 1


def test_changes_that_give_no_one_everything_ask_nothing(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    target = make_user("ed@example.org")
    answer = submit(admin, f"/admin/users/{target}", f"/admin/users/{target}/roles", role="auditor")
    assert answer.status_code == 303
    assert "now has the role auditor" in admin.get(answer.location).text


def test_AUTHZ_13_fresh_proofs_are_throttled_like_sign_ins(app: Flask, admin: FlaskClient) -> None:
    """A borrowed console session is no password oracle: after the free attempts, even the
    right password waits."""
    free = app.extensions["identity"].settings.login_throttle_free_attempts
    for _ in range(free):
        wrong = submit(admin, "/admin/keys", "/admin/keys/rotate", reauth="guess")
        assert wrong.status_code == 400
        assert "is not right" in wrong.text
    held = submit(admin, "/admin/keys", "/admin/keys/rotate", **REAUTH)
    assert held.status_code == 400
    assert "Too many wrong answers" in held.text
    assert audit_events(app, "key.rotate") == []


def test_a_password_is_taken_as_typed(app: Flask, operator: Any, make_user: Any) -> None:
    """Spaces around a password are part of it, in the fresh proof as at sign-in."""
    from tests.conftest import sign_in

    spaced = "  correct horse battery staple  "
    make_user("sp@example.org", password=spaced, roles=("admin",))
    app.extensions["identity"].rbac.invalidate()
    browser = app.test_client()
    assert sign_in(browser, "sp@example.org", spaced).status_code == 303
    answer = submit(browser, "/admin/keys", "/admin/keys/rotate", reauth=spaced)
    assert answer.status_code == 303, answer.text
