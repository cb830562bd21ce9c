"""Email verification: the mailed link, its confirmation button, expiry and resending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from identity.models.base import utcnow
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    add_user,
    audit_events,
    comparable,
    get_user,
    post_with_token,
    set_cookie_names,
    update_user,
)

INVALID = "This link is invalid or has expired. Please request a new one."
USED = "This link has been used: the email address is verified."


def register(client, email="new@example.org"):
    return form_post(client, "/register", {"email": email, "password": PASSWORD})


def test_verify_link_get_shows_a_button_and_changes_nothing(app, client, mailbox):
    """Opening the link (or a scanner prefetching it) only shows a confirmation button."""
    register(client)
    link = mailbox.last_link("new@example.org")
    for method in (client.get, client.head):
        response = method(link)
        assert response.status_code == 200
    assert "Verify my email address" in client.get(link).data.decode()
    assert get_user(app, "new@example.org").email_verified_at is None


def test_verify_link_post_verifies_and_sends_to_sign_in(app, client, mailbox):
    """Confirming verifies the address, redirects 303 to sign-in and says so."""
    register(client)
    link = mailbox.last_link("new@example.org")
    response = form_post(client, link, {})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert "Your email address is verified." in client.get("/sign-in").data.decode()
    assert get_user(app, "new@example.org").email_verified_at is not None
    assert sign_in(client, "new@example.org").status_code == 303


def test_verify_link_works_only_once(app, client, mailbox):
    """A used verification link says the address is verified and offers sign-in, with no
    button, both when opened (GET) and when its old page is submitted again (POST)."""
    register(client)
    link = mailbox.last_link("new@example.org")
    page = client.get(link)
    assert client.post(link, data={"csrf_token": csrf_token(page.data)}).status_code == 303
    for response in (client.get(link), post_with_token(client, link, {})):
        assert response.status_code == 200
        html = response.data.decode()
        assert USED in html
        assert 'href="/sign-in"' in html
        assert "<button" not in html and "Verify my email address" not in html
    assert len(audit_events(app, "user.email_verified")) == 1


def test_verify_link_of_an_address_verified_otherwise_shows_no_button(app, client, mailbox):
    """A link whose address got verified another way (a password reset proves the
    mailbox) says so instead of offering the button."""
    register(client)
    link = mailbox.last_link("new@example.org")
    form_post(client, "/forgot-password", {"email": "new@example.org"})
    reset = mailbox.last_link("new@example.org")
    assert form_post(client, reset, {"password": "a brand new passphrase"}).status_code == 303
    assert get_user(app, "new@example.org").email_verified_at is not None
    response = client.get(link)
    assert response.status_code == 200
    assert USED in response.data.decode() and "<button" not in response.data.decode()


def test_verify_link_used_page_offers_the_account_when_signed_in(app, client, mailbox):
    """Signed in, the used-link page links to the account instead of the sign-in page."""
    register(client)
    link = mailbox.last_link("new@example.org")
    form_post(client, link, {})
    sign_in(client, "new@example.org")
    html = client.get(link).data.decode()
    assert USED in html and 'href="/account">Go to your account' in html


def test_invalid_verify_link_shows_no_button_when_opened(client, mailbox):
    """Opening a forged link shows the invalid-link page (400), with no button."""
    register(client)
    link = mailbox.last_link("new@example.org")
    response = client.get(link[:-2] + ("AA" if not link.endswith("AA") else "BB"))
    assert response.status_code == 400
    html = response.data.decode()
    assert INVALID in html and "<button" not in html and 'href="/sign-in"' in html


def test_verify_link_post_without_csrf_token_is_refused(app, client, mailbox):
    """A token-less POST to the link answers 400 and does not verify."""
    register(client)
    link = mailbox.last_link("new@example.org")
    assert client.post(link).status_code == 400
    assert get_user(app, "new@example.org").email_verified_at is None


def test_AUTH_14_verify_link_expires(app, client, mailbox):
    """A verification link older than verification_link_lifetime is refused."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        register(client)
        link = mailbox.last_link("new@example.org")
        traveller.shift(timedelta(seconds=86400 + 1))
        assert client.get(link).status_code == 400
        response = post_with_token(client, link, {})
    assert response.status_code == 400
    assert INVALID in response.data.decode()
    assert get_user(app, "new@example.org").email_verified_at is None


def test_AUTH_14_tampered_or_foreign_links_are_refused(app, client, user, mailbox):
    """A tampered link, a made-up one, and a reset link used as a verify link are refused."""
    register(client)
    link = mailbox.last_link("new@example.org")
    form_post(client, "/forgot-password", {"email": "alice@example.org"})
    reset_token = mailbox.last_link("alice@example.org").rsplit("/", 1)[1]
    for bad in (
        link[:-2] + ("AA" if not link.endswith("AA") else "BB"),
        "/verify-email/made-up-token",
        "/verify-email/" + reset_token,
        "/verify-email/" + "x" * 1200,
    ):
        response = post_with_token(client, bad, {})
        assert response.status_code == 400, bad
        assert INVALID in response.data.decode()
    assert get_user(app, "new@example.org").email_verified_at is None


def test_verify_link_of_a_disabled_account_is_refused(app, client, mailbox):
    """A disabled account cannot be verified through an old link."""
    register(client)
    link = mailbox.last_link("new@example.org")
    update_user(app, "new@example.org", disabled_at=utcnow())
    assert client.get(link).status_code == 400
    assert post_with_token(client, link, {}).status_code == 400


def test_resend_page_shows_the_form(client):
    """GET /verify-email/resend shows an email field, says what it is for, and links back
    to sign-in."""
    response = client.get("/verify-email/resend")
    assert response.status_code == 200
    html = response.data.decode()
    assert "Resend the verification email" in html
    assert "must confirm its email address before it can sign in" in html
    assert '<a href="/sign-in">Back to sign in</a>' in html


def test_resend_mails_a_new_link_to_an_unverified_account(app, client, mailbox):
    """Resending mails a link that verifies the account."""
    add_user(app, "pending@example.org", verified=False)
    response = form_post(client, "/verify-email/resend", {"email": "PENDING@example.org"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/verify-email/sent"
    assert "a new verification link is on its way" in client.get("/verify-email/sent").data.decode()
    assert form_post(client, mailbox.last_link("pending@example.org"), {}).status_code == 303
    assert get_user(app, "pending@example.org").email_verified_at is not None


def test_AUTH_12_resend_same_response_for_unknown_verified_and_unverified(app, mailbox):
    """Resend answers identically whether the address is unknown, verified or waiting."""
    add_user(app, "done@example.org")
    add_user(app, "pending@example.org", verified=False)
    seen = []
    for email in ("nobody@example.org", "done@example.org", "pending@example.org", "bad"):
        response = form_post(app.test_client(), "/verify-email/resend", {"email": email})
        seen.append(
            (
                response.status_code,
                response.headers["Location"],
                set_cookie_names(response),
                comparable(response.data),
            )
        )
    assert seen[0][:2] == (303, "/verify-email/sent")
    assert all(entry == seen[0] for entry in seen)
    assert [m["To"] for m in mailbox.messages] == ["pending@example.org"]


def test_resend_form_errors_answer_400(client):
    """An empty resend form answers 400."""
    assert form_post(client, "/verify-email/resend", {"email": ""}).status_code == 400


def test_LOG_01_verification_is_audited(app, client, mailbox):
    """Verifying an email writes a user.email_verified audit event for that user."""
    register(client)
    form_post(client, mailbox.last_link("new@example.org"), {})
    user = get_user(app, "new@example.org")
    events = audit_events(app, "user.email_verified")
    assert len(events) == 1
    assert events[0]["subject_id"] == events[0]["actor_id"] == user.id


def test_INPUT_14_verification_resends_are_limited_per_account(client, make_user, mailbox):
    """Asking again within a minute sends no second verification mail to the same address."""
    from tests.conftest import form_post

    make_user("late@example.org", verified=False)
    for _ in range(3):
        form_post(client, "/verify-email/resend", {"email": "late@example.org"})
    assert len(mailbox.to("late@example.org")) == 1
