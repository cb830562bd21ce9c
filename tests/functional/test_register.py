"""Self-registration: the page, the password policy, duplicates, and closed registration."""

from __future__ import annotations

import re
import threading

import pytest

from identity.errors import InvalidInput
from identity.models.base import utcnow
from identity.models.session import LoginSession
from identity.models.user import User
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    add_user,
    comparable,
    count,
    get_user,
    set_cookie_names,
    update_user,
)


def register(client, email="new@example.org", password=PASSWORD, name="", **extra):
    data = {"email": email, "password": password, "name": name, **extra}
    return form_post(client, "/register", data)


def test_register_page_shows_the_form(client):
    """GET /register shows the email, name and password fields with a CSRF token."""
    response = client.get("/register")
    assert response.status_code == 200
    html = response.data.decode()
    assert "Create an account" in html
    assert 'name="email"' in html and 'name="password"' in html and 'name="name"' in html
    assert csrf_token(html)


def test_register_creates_an_unverified_account_and_mails_a_link(app, client, mailbox):
    """A registration answers 303 to the check-your-inbox page and mails a verification link."""
    response = register(client, "New@Example.org", name="New Person")
    assert response.status_code == 303
    assert response.headers["Location"] == "/register/sent"

    page = client.get("/register/sent")
    assert page.status_code == 200
    assert "Check your inbox" in page.data.decode()

    user = get_user(app, "new@example.org")
    assert user is not None and user.name == "New Person"
    assert user.email_verified_at is None
    assert user.password_hash.startswith("$argon2id$")
    message = mailbox.to("new@example.org")[-1]
    assert message["Subject"] == "Verify your email address"
    assert mailbox.last_link("new@example.org").startswith("/verify-email/")


def test_register_form_errors_answer_400(client):
    """A registration without email or password re-renders the form with 400."""
    response = form_post(client, "/register", {"email": "", "password": ""})
    assert response.status_code == 400
    assert "This field is required." in response.data.decode()


def test_register_rejects_an_invalid_email(client, mailbox):
    """An address that is not an email answers 400 with guidance and mails nothing."""
    response = register(client, "not-an-email")
    assert response.status_code == 400
    assert "Enter a valid email address." in response.data.decode()
    assert mailbox.messages == []


def test_INPUT_07_register_rejects_header_injection_in_the_email(app, client, mailbox):
    """An email with CRLF and a Bcc header is refused; no mail goes out."""
    response = register(client, "victim@example.org\r\nBcc: spy@evil.test")
    assert response.status_code == 400
    assert mailbox.messages == []
    assert count(app, User) == 0


@pytest.mark.parametrize("password", ["short12", "a" * 3 + "b" * 4])
def test_AUTH_01_register_rejects_passwords_under_8_characters(app, client, password):
    """A 7-character password is refused with the minimum length named."""
    response = register(client, password=password)
    assert response.status_code == 400
    assert "Use at least 8 characters." in response.data.decode()
    assert get_user(app, "new@example.org") is None


@pytest.mark.parametrize("password", ["kq7#vz2m", "a long passphrase of many words"])
def test_AUTH_01_register_accepts_8_characters_and_long_passphrases(app, client, password):
    """An 8-character password and a 15+ character passphrase are accepted."""
    assert register(client, password=password).status_code == 303
    assert get_user(app, "new@example.org") is not None


@pytest.mark.parametrize("password", ["password1234", "123456789", "qwertyuiop", "iloveyou"])
def test_AUTH_03_register_rejects_common_and_breached_passwords(app, client, password):
    """Passwords from the common/breached list are refused with guidance."""
    response = register(client, password=password)
    assert response.status_code == 400
    assert "too common or has appeared in a data breach" in response.data.decode()
    assert get_user(app, "new@example.org") is None


def test_AUTH_03_register_rejects_a_password_made_of_the_email(client):
    """A password that is the email's local part plus a little is refused."""
    response = register(client, "marguerite@example.org", password="marguerite1")
    assert response.status_code == 400
    assert "too similar to your email address or name" in response.data.decode()


@pytest.mark.parametrize(
    "password",
    ["correcthorsebatterystaple", "with spaces and more", "emoji 🔐 passphrase ✓", "ÄÖÜ äöü ñ ç ø"],
)
def test_AUTH_04_no_composition_rules_and_any_characters(app, client, password):
    """Lower-case only, spaces and emoji are accepted, and the exact password signs in."""
    assert register(client, password=password).status_code == 303
    update_user(app, "new@example.org", email_verified_at=utcnow())
    assert sign_in(client, "new@example.org", password).status_code == 303


def test_AUTH_04_password_fields_are_masked_and_allow_paste(client):
    """Password inputs are type=password, with no paste blocking attributes."""
    html = client.get("/register").data.decode()
    assert 'id="password"' in html
    assert 'name="password" required type="password"' in html
    assert "onpaste" not in html.lower()


def test_AUTH_06_register_refuses_megabyte_passwords_without_hashing(client, argon_calls):
    """A huge password is refused at once, before any argon2 work."""
    response = register(client, password="x" * 1_000_000)
    assert response.status_code in (400, 413)
    assert argon_calls.hashes == 0 and argon_calls.verifies == 0


def test_AUTH_06_register_refuses_passwords_over_the_configured_maximum(client, argon_calls):
    """A password over password_max_length (256) is refused with a readable message."""
    response = register(client, password="long passphrase " * 20)
    assert response.status_code == 400
    assert "Use at most 256 characters." in response.data.decode()
    assert argon_calls.hashes == 0


def test_AUTH_06_register_accepts_a_64_character_password(app, client):
    """A 64-character password is accepted and signs in."""
    password = "0123456789abcdefghij" * 3 + "wxyz"
    assert len(password) == 64
    assert register(client, password=password).status_code == 303
    assert get_user(app, "new@example.org") is not None


def test_AUTH_12_register_same_response_for_new_and_existing_email(
    app, client, user, mailbox, argon_calls
):
    """Registering a taken email looks exactly like a new one; the owner is told by mail."""
    taken = register(client, "alice@example.org")
    hashes_for_taken = argon_calls.hashes
    argon_calls.reset()
    fresh = register(app.test_client(), "fresh@example.org")
    assert argon_calls.hashes == hashes_for_taken == 1  # the same argon2 work either way

    assert taken.status_code == fresh.status_code == 303
    assert taken.headers["Location"] == fresh.headers["Location"]
    assert set_cookie_names(taken) == set_cookie_names(fresh)
    assert taken.data == fresh.data
    assert mailbox.to("alice@example.org")[-1]["Subject"] == (
        "Someone tried to create an account with your email address"
    )
    assert count(app, User) == 2


def test_INPUT_01_name_with_markup_is_stored_and_shown_escaped(app, client, mailbox):
    """A display name with HTML and template syntax is shown inert on the account page."""
    name = '"><img src=x onerror=alert(1)>{{7*7}}'
    assert register(client, name=name).status_code == 303
    update_user(app, "new@example.org", email_verified_at=utcnow())
    sign_in(client, "new@example.org")
    html = client.get("/account").data.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;{{7*7}}" in html
    # Not evaluated as a template (looked for next to the name only: random tokens on the
    # page may contain "49").
    assert "&gt;49" not in html
    # INPUT-06 and ISSUE7-09: the mail does not quote the name at all (an unconfirmed name
    # in a mail from us helps phishing); nothing of it is evaluated either.
    body = mailbox.to("new@example.org")[0].get_content()
    assert "7*7" not in body and "img" not in body and "49" not in body.split("\n")[0]


def test_ISSUE7_09_mail_greets_nobody_by_the_name_typed_at_registration(app, client, mailbox):
    """The verification mail does not repeat what the registrant typed as their name."""
    name = "there. URGENT: your account is locked, see https://evil.example/x"
    assert register(client, name=name).status_code == 303
    body = mailbox.to("new@example.org")[0].get_content()
    assert "URGENT" not in body and "evil.example" not in body
    assert body.startswith("Hello,")


def test_register_strips_control_characters_from_the_name(app, client):
    """Control characters (CR, LF, ANSI escapes) never reach the stored name."""
    assert register(client, name="Eve\r\nBcc: x\x1b[31m").status_code == 303
    assert get_user(app, "new@example.org").name == "EveBcc: x[31m"


def test_register_refuses_a_nul_in_any_field(app, client):
    """A NUL character in a form is refused with a 400 page; nothing is stored."""
    response = register(client, name="Eve\x00")
    assert response.status_code == 400
    assert b"NUL" in response.data
    assert count(app, User) == 0


@pytest.mark.parametrize(
    "variant",
    [
        "ALICE@example.org",
        "Alice@EXAMPLE.ORG",
        "  alice@example.org  ",
        "\uff41\uff4c\uff49\uff43\uff45@example.org",  # fullwidth letters
        "alice\uff20example.org",  # fullwidth at sign
    ],
)
def test_INPUT_11_case_width_and_space_variants_do_not_create_a_second_account(
    app, client, user, variant
):
    """Variants of an existing email reach the same account instead of a new one."""
    assert register(client, variant).status_code == 303
    assert count(app, User) == 1


def test_INPUT_11_idn_domain_spellings_are_one_account(app, client):
    """The Unicode and punycode spellings of a domain register only one account."""
    assert register(client, "bob@Bücher.example").status_code == 303
    assert register(app.test_client(), "bob@xn--bcher-kva.example").status_code == 303
    assert count(app, User) == 1


def test_INPUT_11_composed_and_decomposed_local_parts_are_one_account(app, client):
    """NFC and NFD spellings of the same local part are one account."""
    assert register(client, "jos\u00e9@example.org").status_code == 303
    assert register(app.test_client(), "jose\u0301@example.org").status_code == 303
    assert count(app, User) == 1


def test_INPUT_11_sign_in_accepts_any_case_of_the_email(client, user):
    """The login identity is the canonical email, whatever case is typed."""
    assert sign_in(client, "ALICE@Example.ORG").status_code == 303


def test_REL_17_concurrent_registrations_with_one_email_create_one_user(app):
    """Parallel registrations of the same email end with exactly one user and no errors."""
    clients = [app.test_client() for _ in range(6)]
    tokens = [csrf_token(c.get("/register").data) for c in clients]
    statuses: list[int] = []
    barrier = threading.Barrier(len(clients))

    def run(c, token):
        barrier.wait()
        data = {"csrf_token": token, "email": "race@example.org", "password": PASSWORD}
        statuses.append(c.post("/register", data=data).status_code)

    pairs = zip(clients, tokens, strict=True)
    threads = [threading.Thread(target=run, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [303] * len(clients)
    assert count(app, User, email="race@example.org") == 1


def test_registration_closed_answers_403(app_factory):
    """With registration closed, the page says so with 403 and a POST creates nothing."""
    app = app_factory(registration="closed")
    client = app.test_client()
    response = client.get("/register")
    assert response.status_code == 403
    assert "Self-registration is closed." in response.data.decode()

    token = csrf_token(client.get("/sign-in").data)
    data = {"csrf_token": token, "email": "new@example.org", "password": PASSWORD}
    assert client.post("/register", data=data).status_code == 403
    assert get_user(app, "new@example.org") is None
    assert 'href="/register"' not in client.get("/sign-in").data.decode()


def test_register_page_links_to_sign_in_when_open(client):
    """The sign-in page offers registration when it is open."""
    assert 'href="/register"' in client.get("/sign-in").data.decode()


def test_register_comparable_bodies_helper_blanks_the_token(client):
    """Two renderings of the form differ only in the CSRF token (guards the AUTH-12 helper)."""
    first = client.get("/register").data
    second = client.application.test_client().get("/register").data
    assert first != second
    assert comparable(first) == comparable(second)


def test_create_user_refuses_a_duplicate(app):
    """The operator path refuses an email that already has an account."""
    add_user(app, "dup@example.org")
    with pytest.raises(InvalidInput, match="already exists"):
        add_user(app, "DUP@example.org")


def test_AUTH_18_no_security_questions_or_password_hints(client):
    """Registration asks only for email, name and password: no questions, no hints."""
    html = client.get("/register").data.decode()
    inputs = set(re.findall(r'<input[^>]* name="([^"]+)"', html))
    assert inputs == {"csrf_token", "invite", "email", "name", "password"}
    assert "security question" not in html.lower()


def test_AUTH_10_only_sign_in_creates_a_session(app, client, mailbox):
    """Registering, verifying and resetting never sign the browser in by themselves."""
    register(client)
    form_post(client, mailbox.last_link("new@example.org"), {})
    assert client.get("/account").status_code == 302
    form_post(client, "/forgot-password", {"email": "new@example.org"})
    form_post(client, mailbox.last_link("new@example.org"), {"password": "a brand new passphrase"})
    assert client.get("/account").status_code == 302
    assert count(app, LoginSession) == 0


def test_INPUT_13_flow_steps_cannot_be_skipped(app, client):
    """Verification and reset need their token: no endpoint skips that step."""
    for path in ("/verify-email/", "/reset-password/", "/verify-email", "/reset-password"):
        assert client.get(path).status_code == 404, path
    # A registration alone leaves the address unverified until the link is used.
    assert register(client, "x@example.org").status_code == 303
    assert get_user(app, "x@example.org").email_verified_at is None
