"""Per-IP request rate limits and the per-account sign-in throttle (AUTH-08).

Flask-Limiter is one object per process whose on/off switch is set by the app built last,
so each rate-limit test builds exactly one app (no ``app``-based fixtures next to it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from identity.models.base import utcnow
from tests.conftest import PASSWORD, Mailbox, csrf_token, sign_in
from tests.functional.conftest import (
    add_user,
    audit_events,
    cookie_value,
    device_cookie_name,
    get_user,
    update_user,
)

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
THROTTLED = "Too many failed attempts."


def post_form(client, path, data, headers=None):
    token = csrf_token(client.get(path, headers=headers).data)
    return client.post(path, data={"csrf_token": token, **data}, headers=headers)


def assert_rate_limited(response):
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many requests" in response.data.decode()


# Per-IP limits ---------------------------------------------------------------------------


def test_sign_in_posts_are_rate_limited_per_ip(app_factory):
    """Sign-in POSTs beyond ratelimit_sign_in answer 429 with Retry-After, even if correct."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="3/minute")
    add_user(app)
    client = app.test_client()
    wrong = {"email": "x@example.org", "password": "nope nope"}
    for _ in range(3):
        assert post_form(client, "/sign-in", wrong).status_code == 200
    response = post_form(client, "/sign-in", {"email": "alice@example.org", "password": PASSWORD})
    assert_rate_limited(response)
    assert cookie_value(client, "identity_session") is None


def test_sign_in_default_limit_is_ten_a_minute(app_factory):
    """With the default settings the eleventh sign-in POST in a minute answers 429."""
    app = app_factory(ratelimit_enabled=True)
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").data)
    empty = {"csrf_token": token, "email": "", "password": ""}
    codes = [client.post("/sign-in", data=empty).status_code for _ in range(11)]
    assert codes == [400] * 10 + [429]


def test_registration_is_rate_limited_per_ip(app_factory):
    """Registrations beyond ratelimit_registration answer 429 and create nothing."""
    app = app_factory(ratelimit_enabled=True, ratelimit_registration="2/minute")
    client = app.test_client()
    for n in range(2):
        data = {"email": f"u{n}@example.org", "password": PASSWORD}
        assert post_form(client, "/register", data).status_code == 303
    response = post_form(client, "/register", {"email": "u9@example.org", "password": PASSWORD})
    assert_rate_limited(response)
    assert get_user(app, "u9@example.org") is None


@pytest.mark.parametrize("path", ["/forgot-password", "/verify-email/resend"])
def test_mail_requests_are_rate_limited_per_ip(app_factory, path):
    """Reset and verification-mail requests beyond ratelimit_mail answer 429 (INPUT-14)."""
    app = app_factory(ratelimit_enabled=True, ratelimit_mail="2/minute")
    client = app.test_client()
    for _ in range(2):
        assert post_form(client, path, {"email": "a@example.org"}).status_code == 303
    assert_rate_limited(post_form(client, path, {"email": "a@example.org"}))


def test_limited_views_answer_with_rate_limit_headers(app_factory):
    """Flask-Limiter's header hook still runs for a request whose view checked a limit; it
    is skipped only where there is nothing to add (docs/performance.md)."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="3/minute")
    client = app.test_client()
    response = post_form(client, "/sign-in", {"email": "x@example.org", "password": "nope nope"})
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert "X-RateLimit-Reset" in response.headers
    assert "X-RateLimit-Limit" not in client.get("/jwks.json").headers


def test_page_views_are_not_rate_limited(app_factory):
    """GETs of the forms do not count against the POST limits."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="1/minute")
    client = app.test_client()
    assert all(client.get("/sign-in").status_code == 200 for _ in range(5))


def test_AUTH_08_password_spraying_across_accounts_hits_the_ip_limit(app_factory):
    """One client trying one password on many accounts is stopped by the per-IP limit."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="5/minute")
    client = app.test_client()
    codes = [
        post_form(
            client, "/sign-in", {"email": f"u{n}@example.org", "password": "Summer2030!"}
        ).status_code
        for n in range(7)
    ]
    assert codes == [200] * 5 + [429, 429]


def test_BCP_44_spoofed_forwarded_for_does_not_escape_the_limit(app_factory):
    """Without trusted proxies a new X-Forwarded-For per request gets no new allowance."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="2/minute")
    client = app.test_client()
    data = {"email": "x@example.org", "password": "nope nope"}
    codes = [
        post_form(client, "/sign-in", data, {"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 429, 429]


def test_BCP_44_limits_use_the_client_address_behind_a_trusted_proxy(app_factory):
    """Behind one trusted proxy each real client address has its own allowance."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="1/minute", trusted_proxies=1)
    client = app.test_client()
    data = {"email": "x@example.org", "password": "nope nope"}
    first = {"X-Forwarded-For": "198.51.100.1"}
    assert post_form(client, "/sign-in", data, first).status_code == 200
    assert post_form(client, "/sign-in", data, first).status_code == 429
    second = {"X-Forwarded-For": "198.51.100.2"}
    assert post_form(client, "/sign-in", data, second).status_code == 200


# Per-account throttle ----------------------------------------------------------------------


WRONG = "wrong password"


def fail(client, email="alice@example.org"):
    return sign_in(client, email, WRONG)


@pytest.mark.parametrize("email", ["alice@example.org", "nobody@example.org"])
def test_AUTH_08_account_throttle_after_free_attempts(app_factory, email):
    """After login_throttle_free_attempts failures the account answers 429, known or not."""
    app = app_factory(login_throttle_free_attempts=3)
    add_user(app)
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        assert [fail(client, email).status_code for _ in range(3)] == [200, 200, 200]
        response = sign_in(client, email, PASSWORD)
    assert response.status_code == 429
    assert THROTTLED in response.data.decode()
    assert response.headers["Retry-After"] == "1"
    assert cookie_value(client, "identity_session") is None


def test_AUTH_08_throttle_is_the_same_for_known_and_unknown_emails(app_factory):
    """The throttle answer for an unknown email is the same as for a real account."""
    app = app_factory()
    add_user(app)
    answers = []
    with time_machine.travel(START, tick=False):
        for email in ("alice@example.org", "nobody@example.org"):
            client = app.test_client()
            for _ in range(5):
                fail(client, email)
            response = fail(client, email)
            html = response.data.decode().replace(email, "EMAIL")
            answers.append(
                (
                    response.status_code,
                    response.headers["Retry-After"],
                    html.split('name="csrf_token"')[0],
                )
            )
    assert answers[0][0] == 429
    assert answers[0] == answers[1]


def test_AUTH_08_delays_grow_and_are_capped(app_factory):
    """Each further failure doubles the wait, up to login_throttle_max_delay."""
    app = app_factory(login_throttle_free_attempts=1, login_throttle_max_delay=4)
    client = app.test_client()
    waits = []
    with time_machine.travel(START, tick=False) as traveller:
        for _ in range(5):
            fail(client, "x@example.org")
            response = fail(client, "x@example.org")
            assert response.status_code == 429
            waits.append(int(response.headers["Retry-After"]))
            traveller.shift(timedelta(seconds=waits[-1]))
    assert waits == [1, 2, 4, 4, 4]


def test_AUTH_08_no_success_during_the_block_and_success_after(app_factory):
    """The right password does not work while blocked, works after the wait, and resets."""
    app = app_factory(login_throttle_free_attempts=2)
    add_user(app)
    client = app.test_client()
    with time_machine.travel(START, tick=False) as traveller:
        fail(client)
        fail(client)
        assert sign_in(client).status_code == 429
        traveller.shift(timedelta(seconds=2))
        assert sign_in(client).status_code == 303
        form_client = app.test_client()
        # The success cleared the counter: two more failures are free again.
        assert [fail(form_client).status_code for _ in range(2)] == [200, 200]


def test_AUTH_08_throttle_is_per_account(app_factory):
    """Blocking one account does not affect another."""
    app = app_factory(login_throttle_free_attempts=2)
    add_user(app)
    add_user(app, "bob@example.org")
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        fail(client)
        fail(client)
        assert sign_in(client, "bob@example.org").status_code == 303


def test_AUTH_08_throttle_counts_failures_from_every_address(app_factory):
    """Failures from many client addresses all count against the account."""
    app = app_factory(login_throttle_free_attempts=3, trusted_proxies=1)
    add_user(app)
    with time_machine.travel(START, tick=False):
        for n in range(3):
            client = app.test_client()
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{n}"
            fail(client)
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.99"
        assert sign_in(client).status_code == 429


def test_AUTH_08_device_cookie_prevents_lock_out(app_factory):
    """A browser that signed in before keeps working while an attacker is throttled."""
    app = app_factory(login_throttle_free_attempts=3)
    add_user(app)
    owner = app.test_client()
    with time_machine.travel(START, tick=False):
        assert sign_in(owner).status_code == 303
        assert cookie_value(owner, device_cookie_name(app))
        token = csrf_token(owner.get("/sign-out").data)
        owner.post("/sign-out", data={"csrf_token": token})

        attacker = app.test_client()
        for _ in range(5):
            fail(attacker)
        assert sign_in(attacker).status_code == 429  # even with the right password
        assert sign_in(owner).status_code == 303


def test_AUTH_08_device_cookie_of_another_account_does_not_help(app_factory):
    """A device cookie vouches only for the account it was issued for."""
    app = app_factory(login_throttle_free_attempts=2)
    add_user(app)
    add_user(app, "mallory@example.org")
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        assert sign_in(client, "mallory@example.org").status_code == 303
        other = app.test_client()
        other.set_cookie(device_cookie_name(app), cookie_value(client, device_cookie_name(app)))
        fail(other)
        fail(other)
        assert sign_in(other).status_code == 429


def test_AUTH_08_forged_device_cookie_does_not_help(app_factory):
    """A device cookie not signed by this server is ignored."""
    app = app_factory(login_throttle_free_attempts=1)
    add_user(app)
    client = app.test_client()
    client.set_cookie(device_cookie_name(app), "forged.cookie.value")
    with time_machine.travel(START, tick=False):
        fail(client)
        assert sign_in(client).status_code == 429


def test_AUTH_08_throttled_attempts_are_audited(app_factory):
    """A throttled attempt leaves a failure audit event with reason throttled."""
    app = app_factory(login_throttle_free_attempts=1)
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        fail(client, "x@example.org")
        fail(client, "x@example.org")
    reasons = [e["data"]["reason"] for e in audit_events(app, "user.sign_in")]
    assert reasons == ["unknown_user", "throttled"]


def test_AUTH_08_reset_clears_the_throttle(app_factory):
    """Completing a password reset lifts the block for the account."""
    app = app_factory(login_throttle_free_attempts=2)
    mailbox = Mailbox(app)
    add_user(app)
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        fail(client)
        fail(client)
        assert sign_in(client).status_code == 429
        post_form(client, "/forgot-password", {"email": "alice@example.org"})
        link = mailbox.last_link("alice@example.org")
        assert post_form(client, link, {"password": "a brand new passphrase"}).status_code == 303
        assert sign_in(client, password="a brand new passphrase").status_code == 303


def test_AUTH_08_disabled_account_failures_count_too(app_factory):
    """Sign-ins to a disabled account count like any failure (nothing to tell apart)."""
    app = app_factory(login_throttle_free_attempts=2)
    add_user(app)
    update_user(app, "alice@example.org", disabled_at=utcnow())
    client = app.test_client()
    with time_machine.travel(START, tick=False):
        assert [sign_in(client).status_code for _ in range(3)] == [200, 200, 429]


def test_AUTH_08_guesses_from_a_trusted_browser_are_throttled_too(app_factory):
    """A device cookie skips the account's counter but has its own: no unthrottled guessing."""
    app = app_factory(login_throttle_free_attempts=3)
    add_user(app)
    shared_computer = app.test_client()
    with time_machine.travel(START, tick=False):
        assert sign_in(shared_computer).status_code == 303
        token = csrf_token(shared_computer.get("/sign-out").data)
        shared_computer.post("/sign-out", data={"csrf_token": token})
        assert [fail(shared_computer).status_code for _ in range(3)] == [200, 200, 200]
        response = sign_in(shared_computer)
        assert response.status_code == 429
        assert THROTTLED in response.data.decode()
        # The owner's other browser is not affected by this device's failures.
        assert sign_in(app.test_client()).status_code == 303


def test_AUTH_02_change_password_is_rate_limited(app_factory):
    """Guessing the current password from a session is limited like sign-in attempts."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="2/minute")
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    data = {"current_password": "a guess here", "new_password": "a brand new passphrase"}
    codes = [post_form(client, "/account/password", data).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_AUTH_02_change_email_password_guesses_are_rate_limited(app_factory):
    """Guessing the current password through the email form is limited like sign-in."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="2/minute")
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    data = {"new_email": "new@example.org", "current_password": "a guess here"}
    codes = [post_form(client, "/account/email", data).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_change_email_requests_count_against_the_mail_limit(app_factory):
    """Each successful email-change request mails an address the user chooses, so it
    counts against ratelimit_mail (a signed-in user cannot mail-bomb a stranger)."""
    app = app_factory(ratelimit_enabled=True, ratelimit_mail="2/minute")
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    codes = [
        post_form(
            client,
            "/account/email",
            {"new_email": f"victim{n}@example.org", "current_password": PASSWORD},
        ).status_code
        for n in range(3)
    ]
    assert codes == [303, 303, 429]


def test_only_views_with_a_limit_of_their_own_go_through_the_rate_limiter(app_factory, monkeypatch):
    """Flask-Limiter's request hooks run for the views with a limit of their own and not
    for the others (the hot machine endpoints among them): every check it makes starts by
    identifying the request, which is counted here."""
    from identity.extensions import limiter

    app = app_factory(ratelimit_enabled=True)

    identified: list[str] = []
    identify = limiter.identify_request

    def counting() -> str:
        identified.append("x")
        return identify()

    monkeypatch.setattr(limiter, "identify_request", counting)
    client = app.test_client()

    def checked(method: str, path: str) -> bool:
        identified.clear()
        client.open(path, method=method)
        return bool(identified)

    for path in ("/jwks.json", "/.well-known/openid-configuration", "/userinfo"):
        assert not checked("GET", path), path
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        assert not checked("POST", path), path
    for method, path in (("GET", "/register"), ("GET", "/forgot-password"), ("POST", "/oauth/par")):
        assert checked(method, path), path
