"""Forgotten passwords: the request, the mailed link, and choosing a new password."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from identity.models.base import utcnow
from identity.models.session import LoginSession
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    ISSUER,
    add_user,
    comparable,
    count,
    get_user,
    set_cookie_names,
    update_user,
)

NEW = "a brand new passphrase"
INVALID = "This link is invalid or has expired. Please request a new one."


def request_link(client, mailbox, email="alice@example.org"):
    assert form_post(client, "/forgot-password", {"email": email}).status_code == 303
    return mailbox.last_link(email)


def test_forgot_password_page_shows_the_form(client):
    """GET /forgot-password shows an email field."""
    response = client.get("/forgot-password")
    assert response.status_code == 200
    assert "Forgot your password?" in response.data.decode()


def test_forgot_password_mails_a_link_and_says_check_your_inbox(client, user, mailbox):
    """A request answers 303 to the sent page and mails a reset link."""
    response = form_post(client, "/forgot-password", {"email": "Alice@Example.org"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/forgot-password/sent"
    page = client.get("/forgot-password/sent").data.decode()
    assert "a link to choose a new password is on its way" in page
    message = mailbox.to("alice@example.org")[-1]
    assert message["Subject"] == "Choose a new password"
    assert mailbox.last_link("alice@example.org").startswith("/reset-password/")


def test_forgot_password_form_errors_answer_400(client):
    """An empty request answers 400."""
    assert form_post(client, "/forgot-password", {"email": ""}).status_code == 400


def test_AUTH_12_forgot_password_same_response_for_known_unknown_unverified(app, mailbox):
    """Known, unknown, unverified and malformed addresses get the same answer."""
    add_user(app, "known@example.org")
    add_user(app, "pending@example.org", verified=False)
    seen = []
    for email in ("known@example.org", "nobody@example.org", "pending@example.org", "x"):
        response = form_post(app.test_client(), "/forgot-password", {"email": email})
        seen.append(
            (
                response.status_code,
                response.headers["Location"],
                set_cookie_names(response),
                comparable(response.data),
            )
        )
    assert seen[0][:2] == (303, "/forgot-password/sent")
    assert all(entry == seen[0] for entry in seen)
    assert sorted(m["To"] for m in mailbox.messages) == ["known@example.org", "pending@example.org"]


def test_reset_link_shows_the_form(client, user, mailbox):
    """A valid link shows the new-password form."""
    link = request_link(client, mailbox)
    response = client.get(link)
    assert response.status_code == 200
    assert "Choose a new password" in response.data.decode()


def test_reset_sets_the_new_password(client, user, mailbox):
    """The new password works after a reset; the old one no longer does."""
    link = request_link(client, mailbox)
    response = form_post(client, link, {"password": NEW})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert "Your password has been changed." in client.get("/sign-in").data.decode()
    assert sign_in(client, password=PASSWORD).status_code == 200
    assert sign_in(client, password=NEW).status_code == 303


def test_reset_rejects_a_weak_password_and_keeps_the_link(client, user, mailbox):
    """A too-short or common new password is refused; the link still works afterwards."""
    link = request_link(client, mailbox)
    response = form_post(client, link, {"password": "short"})
    assert response.status_code == 400
    assert "Use at least 8 characters." in response.data.decode()
    response = form_post(client, link, {"password": "password1234"})
    assert "too common" in response.data.decode()
    assert form_post(client, link, {"password": NEW}).status_code == 303


def test_reset_form_errors_answer_400(client, user, mailbox):
    """An empty new password answers 400."""
    link = request_link(client, mailbox)
    assert form_post(client, link, {"password": ""}).status_code == 400


def test_AUTH_16_reset_link_is_single_use(client, user, mailbox):
    """A used reset link is refused for GET and POST."""
    link = request_link(client, mailbox)
    assert form_post(client, link, {"password": NEW}).status_code == 303
    response = client.get(link)
    assert response.status_code == 400
    assert INVALID in response.data.decode()
    token = csrf_token(client.get("/sign-in").data)
    response = client.post(link, data={"csrf_token": token, "password": "attacker's choice!"})
    assert response.status_code == 400
    assert sign_in(client, password=NEW).status_code == 303


def test_AUTH_16_newer_link_invalidates_older_ones(client, user, mailbox):
    """Requesting a new link kills the previous one."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        first = request_link(client, mailbox)
        traveller.shift(timedelta(seconds=61))
        second = request_link(client, mailbox)
        assert first != second
        assert client.get(first).status_code == 400
        assert form_post(client, second, {"password": NEW}).status_code == 303


def test_AUTH_16_reset_link_is_bound_to_one_user(app, client, user, mailbox):
    """A link resets only its own user, whatever user id the form adds."""
    bob = add_user(app, "bob@example.org")
    link = request_link(client, mailbox)
    form_post(client, link, {"password": NEW, "user_id": str(bob), "email": "bob@example.org"})
    assert sign_in(app.test_client(), "bob@example.org", PASSWORD).status_code == 303
    assert sign_in(app.test_client(), "alice@example.org", NEW).status_code == 303


def test_AUTH_16_tampered_links_are_refused(client, user, mailbox):
    """Edited, truncated or invented tokens show the invalid-link page."""
    link = request_link(client, mailbox)
    token = link.rsplit("/", 1)[1]
    flipped = token[:12] + ("A" if token[12] != "A" else "B") + token[13:]
    for bad in (token[:-3], flipped, "invented", "x" * 1500):
        response = client.get("/reset-password/" + bad)
        assert response.status_code == 400, bad
        assert INVALID in response.data.decode()


def test_AUTH_16_verification_link_is_not_a_reset_link(client, mailbox):
    """A verification token at the reset URL is refused (purposes are separate)."""
    form_post(client, "/register", {"email": "new@example.org", "password": PASSWORD})
    token = mailbox.last_link("new@example.org").rsplit("/", 1)[1]
    assert client.get("/reset-password/" + token).status_code == 400


def test_AUTH_14_reset_link_expires(client, user, mailbox):
    """A reset link older than reset_link_lifetime (1 hour) is refused."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        link = request_link(client, mailbox)
        traveller.shift(timedelta(seconds=3599))
        assert client.get(link).status_code == 200
        traveller.shift(timedelta(seconds=2))
        assert client.get(link).status_code == 400


def test_AUTH_17_mailed_links_never_use_the_request_host(app, client, user, mailbox):
    """Host and X-Forwarded-Host headers never reach the links in reset and verify mails."""
    headers = {"Host": "evil.test", "X-Forwarded-Host": "evil.test"}
    for path, email in (
        ("/forgot-password", "alice@example.org"),
        ("/register", "new@example.org"),
        ("/register", "alice@example.org"),
    ):
        token = csrf_token(client.get(path, headers=headers).data)
        data = {"csrf_token": token, "email": email, "password": PASSWORD}
        assert client.post(path, data=data, headers=headers).status_code == 303
    bodies = [message.get_content() for message in mailbox.messages]
    assert len(bodies) == 3
    for body in bodies:
        assert "evil.test" not in body
        assert ISSUER + "/" in body


def test_reset_mail_is_not_repeated_within_a_minute(client, user, mailbox):
    """A second request within 60 seconds sends no second mail (mail bombing)."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        request_link(client, mailbox)
        form_post(client, "/forgot-password", {"email": "alice@example.org"})
        assert len(mailbox.to("alice@example.org")) == 1
        traveller.shift(timedelta(seconds=61))
        form_post(client, "/forgot-password", {"email": "alice@example.org"})
        assert len(mailbox.to("alice@example.org")) == 2


def test_reset_of_a_disabled_account_mails_nothing(app, client, user, mailbox):
    """A disabled account gets no reset link."""
    update_user(app, "alice@example.org", disabled_at=utcnow())
    form_post(client, "/forgot-password", {"email": "alice@example.org"})
    assert mailbox.messages == []


def test_reset_verifies_an_unverified_email(app, client, mailbox):
    """Completing a reset proves the mailbox, so an unverified account can sign in after."""
    add_user(app, "pending@example.org", verified=False)
    link = request_link(client, mailbox, "pending@example.org")
    form_post(client, link, {"password": NEW})
    assert get_user(app, "pending@example.org").email_verified_at is not None
    assert sign_in(client, "pending@example.org", NEW).status_code == 303


def test_SESS_05_reset_ends_every_session(app, user, mailbox):
    """A reset signs out every browser, including one an attacker may hold."""
    attacker = app.test_client()
    assert sign_in(attacker).status_code == 303
    owner = app.test_client()
    link = request_link(owner, mailbox)
    assert form_post(owner, link, {"password": NEW}).status_code == 303
    assert attacker.get("/account").status_code == 302
    assert count(app, LoginSession) == 0


def test_reset_signs_out_the_browser_that_reset(app, client, user, mailbox):
    """The browser completing a reset is signed out and must sign in with the new password."""
    assert sign_in(client).status_code == 303
    link = request_link(client, mailbox)
    form_post(client, link, {"password": NEW})
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize("size", [300, 1_000_000])
def test_AUTH_06_reset_refuses_huge_passwords(client, user, mailbox, argon_calls, size):
    """An over-long new password is refused without hashing it."""
    link = request_link(client, mailbox)
    argon_calls.reset()
    response = form_post(client, link, {"password": "y" * size})
    assert response.status_code in (400, 413)
    assert argon_calls.hashes == 0
