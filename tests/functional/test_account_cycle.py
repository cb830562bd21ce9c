"""The whole account cycle through the Flask test client."""

from __future__ import annotations

from tests.conftest import PASSWORD, form_post, sign_in


def test_register_verify_sign_in_sign_out(client, mailbox):
    """A visitor registers, verifies the email from the mailed link, signs in and out."""
    data = {"email": "New@Example.org", "password": PASSWORD, "name": "New"}
    response = form_post(client, "/register", data)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/register/sent")

    assert sign_in(client, "new@example.org").status_code == 200  # not verified yet

    link = mailbox.last_link("new@example.org")
    assert link.startswith("/verify-email/")
    response = form_post(client, link, {})
    assert response.status_code == 303

    response = sign_in(client, "new@example.org")
    assert response.status_code == 303
    assert client.get("/account").status_code == 200

    response = form_post(client, "/sign-out", {})
    assert response.status_code == 303
    assert client.get("/account").status_code == 302


def test_forgot_and_reset_password(client, user, mailbox):
    """A reset link sets a new password once; the old password stops working."""
    form_post(client, "/forgot-password", {"email": "alice@example.org"})
    link = mailbox.last_link("alice@example.org")
    response = form_post(client, link, {"password": "a brand new passphrase"})
    assert response.status_code == 303
    assert sign_in(client, password=PASSWORD).status_code == 200
    assert sign_in(client, password="a brand new passphrase").status_code == 303
    # single use
    assert client.get(link).status_code == 400
