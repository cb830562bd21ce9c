"""Sign-in: the page, failures that reveal nothing, redirects after sign-in, password rules."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from identity.models.base import utcnow
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    comparable,
    cookie_value,
    get_user,
    set_cookie_names,
    update_user,
)

FAILED = "The email or password is not correct, or the email address has not been verified yet."


def test_sign_in_page_shows_the_form(client):
    """GET /sign-in shows email and password fields, a CSRF token and the help links."""
    response = client.get("/sign-in")
    assert response.status_code == 200
    html = response.data.decode()
    assert "<h1>Sign in</h1>" in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html
    assert 'href="/forgot-password"' in html and 'href="/verify-email/resend"' in html
    assert csrf_token(html)


def test_sign_in_success_redirects_to_the_account(client, user):
    """The right password answers 303 to /account and sets the session cookie."""
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert cookie_value(client, "identity_session")
    page = client.get("/account")
    assert page.status_code == 200
    assert "alice@example.org" in page.data.decode()


def test_sign_in_wrong_password_shows_the_generic_error(client, user):
    """A wrong password re-renders the form with the generic message and no session."""
    response = sign_in(client, password="not the password")
    assert response.status_code == 200
    assert FAILED in response.data.decode()
    assert cookie_value(client, "identity_session") is None
    assert client.get("/account").status_code == 302


def autofocused(html):
    """The names of the inputs that carry autofocus."""
    return re.findall(r'<input[^>]*\bautofocus\b[^>]*name="([^"]+)"', html)


def test_sign_in_page_focuses_the_email_first(client):
    """A fresh sign-in page puts the cursor in the email field."""
    assert autofocused(client.get("/sign-in").data.decode()) == ["email"]


def test_failed_sign_in_keeps_the_email_and_focuses_the_password(client, user):
    """After a refused password the email is kept, the password field is empty and has
    the focus, and the error is shown."""
    response = sign_in(client, password="not the password")
    html = response.data.decode()
    assert FAILED in html and 'role="alert"' in html
    assert 'value="alice@example.org"' in html
    assert "not the password" not in html
    assert autofocused(html) == ["password"]


def test_login_hint_focuses_the_password(client):
    """With the email prefilled by login_hint, the cursor starts in the password field."""
    html = client.get("/sign-in?login_hint=bob@example.org").data.decode()
    assert autofocused(html) == ["password"]


def test_sign_in_form_error_on_the_email_focuses_the_email(client):
    """When the email field itself is wrong (empty), the focus stays on it."""
    response = form_post(client, "/sign-in", {"email": "", "password": "something"})
    assert response.status_code == 400
    assert autofocused(response.data.decode()) == ["email"]


def test_sign_in_form_errors_answer_400(client):
    """An empty form answers 400 with field errors."""
    response = form_post(client, "/sign-in", {"email": "", "password": ""})
    assert response.status_code == 400
    assert "This field is required." in response.data.decode()


def test_sign_in_with_a_malformed_email_fails_like_any_other(client, argon_calls):
    """A malformed email gets the generic failure and still costs one argon2 verify."""
    response = sign_in(client, "no-at-sign", "whatever password")
    assert response.status_code == 200
    assert FAILED in response.data.decode()
    assert argon_calls.verifies == 1


def test_AUTH_12_sign_in_same_response_for_unknown_wrong_and_unverified(
    app, client, make_user, argon_calls
):
    """Unknown email, wrong password, unverified and disabled accounts look identical."""
    make_user("known@example.org")
    make_user("pending@example.org", verified=False)
    make_user("gone@example.org")
    update_user(app, "gone@example.org", disabled_at=utcnow())
    attempts = {
        "unknown": ("nobody@example.org", PASSWORD),
        "wrong": ("known@example.org", "a wrong password"),
        "unverified": ("pending@example.org", PASSWORD),
        "disabled": ("gone@example.org", PASSWORD),
    }
    seen = {}
    for case, (email, password) in attempts.items():
        argon_calls.reset()
        response = sign_in(app.test_client(), email, password)
        # The dummy argon2 verify makes an unknown email cost as much as a known one.
        assert argon_calls.verifies == 1, case
        seen[case] = (
            response.status_code,
            set_cookie_names(response),
            sorted(k for k, _ in response.headers if k != "X-Request-ID"),
            comparable(response.data, email),
        )
    assert seen["unknown"][0] == 200
    assert FAILED in seen["unknown"][3]
    assert seen["unknown"] == seen["wrong"] == seen["unverified"] == seen["disabled"]


def test_sign_in_updates_last_sign_in(app, client, user):
    """A successful sign-in stamps last_sign_in_at."""
    assert get_user(app, "alice@example.org").last_sign_in_at is None
    sign_in(client)
    assert get_user(app, "alice@example.org").last_sign_in_at is not None


@pytest.mark.parametrize(
    "path",
    ["/sign-in", "/register", "/forgot-password", "/verify-email/resend"],
)
def test_BCP_42_form_posts_redirect_with_303(client, user, path):
    """Every successful form POST answers 303 (never 307/308, which replay the body)."""
    data = {"email": "alice@example.org", "password": PASSWORD}
    if path == "/register":
        data["email"] = "someone@example.org"
    response = form_post(client, path, data)
    assert response.status_code == 303


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example/",
        "http://evil.example",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        " //evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "evil.example",
        "/" + "a" * 2100,
    ],
)
def test_BCP_04_next_only_local_paths(client, user, evil):
    """After sign-in, next= never leads off this origin; unsafe values fall back to /account."""
    page = client.get("/sign-in", query_string={"next": evil})
    token = csrf_token(page.data)
    data = {"csrf_token": token, "email": "alice@example.org", "password": PASSWORD, "next": evil}
    response = client.post("/sign-in", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example", "/\\evil.example"])
def test_BCP_04_signed_in_visit_to_sign_in_ignores_foreign_next(signed_in, evil):
    """A signed-in visit to /sign-in?next=... redirects only to local paths."""
    response = signed_in.get("/sign-in", query_string={"next": evil})
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"


@pytest.mark.parametrize("target", ["/account/password", "/account?tab=1", "/x/y%2F%2Fz"])
def test_BCP_04_local_next_is_followed(client, user, target):
    """A same-origin path in next= is where the browser goes after signing in."""
    page = client.get("/sign-in", query_string={"next": target})
    data = {
        "csrf_token": csrf_token(page.data),
        "email": "alice@example.org",
        "password": PASSWORD,
        "next": target,
    }
    response = client.post("/sign-in", data=data)
    assert response.headers["Location"] == target


def test_protected_page_sends_to_sign_in_and_back(client, user):
    """An anonymous visit to /account/password goes to sign-in and returns after it."""
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/account/password"
    page = client.get(response.headers["Location"])
    assert 'name="next" type="hidden" value="/account/password"' in page.data.decode()


def test_INPUT_02_login_hint_and_next_are_escaped(client):
    """login_hint and next are reflected only HTML-escaped."""
    payload = '"><script>alert(1)</script>'
    response = client.get("/sign-in", query_string={"login_hint": payload, "next": payload})
    html = response.data.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_INPUT_02_login_hint_prefills_the_email(client):
    """A login_hint pre-fills the email field (capped at 320 characters)."""
    html = client.get("/sign-in?login_hint=bob@example.org").data.decode()
    assert 'value="bob@example.org"' in html
    long_hint = client.get("/sign-in", query_string={"login_hint": "a" * 1000}).data.decode()
    assert 'value="' + "a" * 320 + '"' in long_hint
    assert "a" * 321 not in long_hint


def test_AUTH_05_only_the_exact_password_works(client, make_user):
    """An 80-character password is not truncated, case-folded or trimmed."""
    password = "Tr0ub4dor & three more words, padded out to eighty characters in total here!!!  "
    assert len(password) == 80
    make_user("exact@example.org", password)
    for near_miss in (password[:72], password.swapcase(), password.strip(), password.rstrip()):
        assert sign_in(client, "exact@example.org", near_miss).status_code == 200, near_miss
    assert sign_in(client, "exact@example.org", password).status_code == 303


def test_AUTH_06_sign_in_with_a_64_character_password(client, make_user):
    """A 64-character password signs in."""
    password = "sixty-four characters of passphrase, all of them count, ok? 1234"
    assert len(password) == 64
    make_user("long@example.org", password)
    assert sign_in(client, "long@example.org", password).status_code == 303


@pytest.mark.parametrize("size", [300, 5000, 1_000_000])
def test_AUTH_06_sign_in_refuses_huge_passwords_without_hashing(client, user, argon_calls, size):
    """An over-long password is refused before argon2 runs."""
    response = sign_in(client, password="x" * size)
    assert response.status_code in (200, 400, 413)
    assert cookie_value(client, "identity_session") is None
    assert argon_calls.verifies == 0


def test_AUTH_07_no_periodic_password_expiry(app, client, user):
    """A password set years ago still signs in straight to the account."""
    update_user(app, "alice@example.org", password_changed_at=utcnow() - timedelta(days=3 * 365))
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


def test_AUTH_09_no_default_credentials(client):
    """A fresh server has no account that default credentials open."""
    for email, password in [
        ("admin@example.com", "admin"),
        ("admin@example.com", "changeme"),
        ("admin@example.com", "password"),
        ("root@localhost", "root"),
        ("admin@localhost", "admin"),
    ]:
        assert sign_in(client, email, password).status_code in (200, 400), email
        assert cookie_value(client, "identity_session") is None


def test_sign_in_a_device_cookie_never_replaces_the_password(client, make_user):
    """A device cookie never replaces the password."""
    make_user()
    assert sign_in(client).status_code == 303
    form_post(client, "/sign-out", {})
    assert sign_in(client, password="wrong password here").status_code == 200
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize(
    "email",
    ["' OR 1=1--@example.org", "alice@example.org' --", '"; DROP TABLE users; --@x.org'],
)
def test_INPUT_04_sql_in_the_login_identifier_is_inert(app, client, user, email):
    """SQL in the email field is just a wrong email: generic failure, no error, no effect."""
    response = sign_in(client, email, PASSWORD)
    assert response.status_code == 200
    assert FAILED in response.data.decode()
    assert get_user(app, "alice@example.org") is not None


def test_INPUT_09_huge_email_is_refused_quickly(client, argon_calls):
    """A 50 kB email is refused by the form before any parsing or hashing."""
    response = sign_in(client, "a" * 50_000 + "@example.org", PASSWORD)
    assert response.status_code == 400
    assert argon_calls.verifies == 0


def test_WEB_11_credentials_in_the_query_string_do_nothing(client, user):
    """Credentials sent in the URL neither sign in on GET nor count on POST."""
    query = {"email": "alice@example.org", "password": PASSWORD}
    assert client.get("/sign-in", query_string=query).status_code == 200
    token = csrf_token(client.get("/sign-in").data)
    response = client.post("/sign-in", query_string=query, data={"csrf_token": token})
    assert response.status_code == 400
    assert cookie_value(client, "identity_session") is None


@pytest.mark.parametrize("raw_path", ["//evil.example", "//evil.example/", "///evil.example"])
def test_BCP_04_double_slash_paths_never_redirect_off_site(client, raw_path):
    """A raw //host path is a missing page, not a redirect to that host."""
    response = client.get("/", environ_overrides={"PATH_INFO": raw_path})
    assert response.status_code == 404
    assert "Location" not in response.headers
