"""Changing the password from a signed-in session."""

from __future__ import annotations

import pytest

from identity.models.session import LoginSession
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import audit_events, count

NEW = "a brand new passphrase"


def change(client, current=PASSWORD, new=NEW):
    data = {"current_password": current, "new_password": new}
    return form_post(client, "/account/password", data)


def test_change_password_needs_a_session(client):
    """Anonymous visitors are sent to sign in, and come back afterwards."""
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/account/password"


def test_change_password_page_shows_the_form(signed_in):
    """The page asks for the current and the new password."""
    response = signed_in.get("/account/password")
    assert response.status_code == 200
    html = response.data.decode()
    assert 'name="current_password"' in html and 'name="new_password"' in html


def test_change_password_success(app, signed_in, mailbox):
    """The right current password sets the new one, redirects 303 and mails a notice."""
    response = change(signed_in)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert "Your password has been changed." in signed_in.get("/account").data.decode()
    # AUTH-13: the owner hears about it.
    assert mailbox.to("alice@example.org")[-1]["Subject"] == "Your password was changed"
    assert sign_in(app.test_client(), password=PASSWORD).status_code == 200
    assert sign_in(app.test_client(), password=NEW).status_code == 303


def test_AUTH_02_change_password_requires_the_current_password(app, signed_in):
    """Without the current password the change is refused and nothing changes."""
    response = form_post(signed_in, "/account/password", {"new_password": NEW})
    assert response.status_code == 400
    assert "This field is required." in response.data.decode()
    assert sign_in(app.test_client(), password=PASSWORD).status_code == 303


def test_AUTH_02_change_password_refuses_a_wrong_current_password(app, signed_in):
    """A wrong current password is refused with a clear message and is audited."""
    response = change(signed_in, current="not my password")
    assert response.status_code == 400
    assert "The current password is not correct." in response.data.decode()
    assert sign_in(app.test_client(), password=PASSWORD).status_code == 303
    failures = [e for e in audit_events(app, "user.password_changed") if e["outcome"] == "failure"]
    assert len(failures) == 1
    assert failures[0]["data"] == {"reason": "wrong_password"}


def test_AUTH_02_change_password_requires_a_csrf_token(app, signed_in):
    """A cross-site POST without the token is refused and the password stays."""
    data = {"current_password": PASSWORD, "new_password": NEW}
    evil = {"Origin": "https://evil.test"}
    response = signed_in.post("/account/password", data=data, headers=evil)
    assert response.status_code == 400
    assert sign_in(app.test_client(), password=PASSWORD).status_code == 303


def test_AUTH_01_change_password_refuses_7_characters(signed_in):
    """A 7-character new password is refused."""
    response = change(signed_in, new="short12")
    assert response.status_code == 400
    assert "Use at least 8 characters." in response.data.decode()


def test_AUTH_03_change_password_refuses_common_passwords(signed_in):
    """A breached password is refused as the new one."""
    response = change(signed_in, new="password1234")
    assert response.status_code == 400
    assert "too common" in response.data.decode()


def test_change_password_refuses_the_same_password(signed_in):
    """The new password must differ from the current one."""
    response = change(signed_in, new=PASSWORD)
    assert response.status_code == 400
    assert "must differ from the current one" in response.data.decode()


@pytest.mark.parametrize("size", [300, 1_000_000])
def test_AUTH_06_change_password_refuses_huge_input_without_hashing(signed_in, argon_calls, size):
    """Over-long current or new passwords are refused without argon2 work."""
    argon_calls.reset()
    assert change(signed_in, current="c" * size).status_code in (400, 413)
    assert argon_calls.verifies == 0
    assert change(signed_in, new="n" * size).status_code in (400, 413)
    assert argon_calls.hashes == 0
    assert argon_calls.verifies <= 1  # only the real, short current password is checked


def test_SESS_05_change_password_ends_other_sessions_but_keeps_this_one(app, user):
    """Other browsers are signed out; the browser that changed the password stays in."""
    other = app.test_client()
    assert sign_in(other).status_code == 303
    this = app.test_client()
    assert sign_in(this).status_code == 303
    assert count(app, LoginSession) == 2
    assert change(this).status_code == 303
    assert this.get("/account").status_code == 200
    assert other.get("/account").status_code == 302
    assert count(app, LoginSession) == 1


def test_change_password_csrf_token_from_before_sign_in_is_dead(app, user):
    """The CSRF token a browser had before signing in does not work after (fresh session)."""
    client = app.test_client()
    old_token = csrf_token(client.get("/sign-in").data)
    assert sign_in(client).status_code == 303
    client.get("/account/password")
    data = {"csrf_token": old_token, "current_password": PASSWORD, "new_password": NEW}
    assert client.post("/account/password", data=data).status_code == 400
