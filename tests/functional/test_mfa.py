"""Second factors through the pages: an authenticator app (TOTP), recovery codes, the second
step of a sign-in, and the MFA policy. Time-based tests freeze the clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import PASSWORD, Mailbox, csrf_token, form_post, sign_in

# A whole minute ahead, so every test runs on a clock of its own (sessions included).
T0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=2)


@pytest.fixture(autouse=True)
def clock() -> Any:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def enrol(client: FlaskClient) -> tuple[pyotp.TOTP, list[str]]:
    """Set up an authenticator app from the security pages; returns it and the codes."""
    page = client.get("/account/security/authenticator")
    assert page.status_code == 200, page.data
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret, page.text
    totp = pyotp.TOTP(secret.group(1).replace(" ", ""))
    answer = client.post(
        "/account/security/authenticator",
        data={"csrf_token": csrf_token(page.data), "code": totp.now()},
    )
    assert answer.status_code == 200, answer.data
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", answer.text)
    assert len(codes) == 10
    return totp, codes


def second_step(client: FlaskClient, code: str, path: str = "/sign-in/second-factor") -> Any:
    return form_post(client, path, {"code": code})


def post_security(client: FlaskClient, path: str, data: dict[str, str]) -> Any:
    """POST one of the security page's forms, with the page's CSRF token."""
    page = client.get("/account/security")
    return client.post(path, data={"csrf_token": csrf_token(page.data), **data})


def signed_in_as(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def login_session(app: Flask) -> Any:
    from identity.extensions import db
    from identity.models.session import LoginSession

    with app.app_context():
        return db.session.execute(select(LoginSession)).scalars().all()


@pytest.fixture
def enrolled(signed_in: FlaskClient, clock: Any) -> tuple[FlaskClient, pyotp.TOTP, list[str]]:
    totp, codes = enrol(signed_in)
    form_post(signed_in, "/sign-out", {})
    clock.shift(timedelta(seconds=30))  # the enrolment's code is spent: the next step's
    return signed_in, totp, codes


def test_AUTH_23_enrolment_needs_a_confirming_code(
    signed_in: FlaskClient, mailbox: Mailbox
) -> None:
    page = signed_in.get("/account/security/authenticator")
    assert "<svg" in page.text and "otpauth" not in page.text  # the QR code drawn here
    wrong = signed_in.post(
        "/account/security/authenticator",
        data={"csrf_token": csrf_token(page.data), "code": "000000"},
    )
    assert wrong.status_code == 400
    assert "Off:" in signed_in.get("/account/security").text
    enrol(signed_in)
    assert "On:" in signed_in.get("/account/security").text
    assert [m["Subject"] for m in mailbox.to("alice@example.org")][-1] == (
        "A sign-in method was added to your account"
    )


def test_AUTH_26_sign_in_asks_for_the_code_and_nothing_counts_before(
    app: Flask, enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], clock: Any
) -> None:
    client, totp, _ = enrolled
    clock.move_to(T0 + timedelta(minutes=1))
    answer = sign_in(client)
    assert answer.status_code == 303
    assert answer.location.startswith("/sign-in/second-factor")
    assert not signed_in_as(client)  # the password alone signs nobody in
    assert second_step(client, totp.now()).status_code == 303
    assert signed_in_as(client)
    sessions = login_session(app)
    assert len(sessions) == 1
    assert sessions[0].amr == ["pwd", "otp"]
    assert sessions[0].acr == "urn:identity:loa:2fa"


def test_AUTH_20_a_code_is_taken_once(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]],
    clock: Any,
) -> None:
    """A code from one step back still works (clock drift, AUTH-21); used, it and every
    older one are refused."""
    client, totp, _ = enrolled
    now = T0 + timedelta(minutes=5)
    clock.move_to(now)
    previous_step = totp.at(now - timedelta(seconds=30))
    sign_in(client)
    assert second_step(client, previous_step).status_code == 303  # drift: one step back
    form_post(client, "/sign-out", {})
    sign_in(client)
    # The same code again, or an older one: refused (replay).
    assert second_step(client, previous_step).status_code == 400
    assert second_step(client, totp.at(now - timedelta(seconds=60))).status_code == 400
    assert second_step(client, totp.at(now)).status_code == 303


def test_AUTH_22_wrong_codes_are_throttled_apart_from_passwords(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]],
    clock: Any,
) -> None:
    client, totp, _ = enrolled
    clock.move_to(T0 + timedelta(minutes=10))
    sign_in(client)
    for _ in range(4):
        assert second_step(client, "000000").status_code == 400
    # The fifth wrong code ends this sign-in: it starts over with the password.
    answer = second_step(client, "000000")
    assert answer.status_code == 303 and answer.location == "/sign-in"
    assert sign_in(client).status_code == 303  # the password is not throttled
    throttled = second_step(client, totp.now())
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    clock.move_to(T0 + timedelta(minutes=12))
    assert second_step(client, totp.now()).status_code == 303


def test_AUTH_24_recovery_code_signs_in_once_and_tells_the_user(
    app: Flask, enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], mailbox: Mailbox
) -> None:
    client, _, codes = enrolled
    sign_in(client)
    assert second_step(client, codes[0].upper(), "/sign-in/recovery-code").status_code == 303
    assert signed_in_as(client)
    assert mailbox.to("alice@example.org")[-1]["Subject"] == "A recovery code was used to sign in"
    form_post(client, "/sign-out", {})
    sign_in(client)
    assert second_step(client, codes[0], "/sign-in/recovery-code").status_code == 400
    assert not signed_in_as(client)
    assert second_step(client, codes[1], "/sign-in/recovery-code").status_code == 303
    assert "8 of 10 unused" in client.get("/account/security").text
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        events = db.session.execute(
            select(AuditEvent.event, AuditEvent.outcome).where(
                AuditEvent.event == "user.second_factor"
            )
        ).all()
    assert ("user.second_factor", "failure") in events
    assert events.count(("user.second_factor", "success")) == 2  # codes[0], then codes[1]


def test_AUTH_24_new_recovery_codes_void_the_old_ones(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]],
) -> None:
    """New codes need the current password (AUTH-25), and the old ones stop working."""
    client, totp, codes = enrolled
    sign_in(client)
    second_step(client, totp.now())
    refused = post_security(client, "/account/security/recovery-codes", {"current_password": "x"})
    assert refused.status_code == 303
    page = post_security(client, "/account/security/recovery-codes", {"current_password": PASSWORD})
    fresh = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", page.text)
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    form_post(client, "/sign-out", {})
    sign_in(client)
    assert second_step(client, codes[1], "/sign-in/recovery-code").status_code == 400
    assert second_step(client, fresh[0], "/sign-in/recovery-code").status_code == 303


def test_AUTH_25_removing_the_app_needs_the_password_and_is_mailed(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], mailbox: Mailbox
) -> None:
    client, totp, _ = enrolled
    sign_in(client)
    second_step(client, totp.now())
    post_security(client, "/account/security/authenticator/remove", {"current_password": "x"})
    assert "On:" in client.get("/account/security").text
    post_security(client, "/account/security/authenticator/remove", {"current_password": PASSWORD})
    assert "Off:" in client.get("/account/security").text
    assert mailbox.to("alice@example.org")[-1]["Subject"] == (
        "A sign-in method was removed from your account"
    )
    form_post(client, "/sign-out", {})
    answer = sign_in(client)
    assert answer.location == "/account"  # one step again


def test_AUTH_23_seed_sealed_at_rest_and_codes_hashed(app: Flask, signed_in: FlaskClient) -> None:
    totp, _ = enrol(signed_in)
    from identity.extensions import db
    from identity.models.mfa import RecoveryCode, TotpCredential

    with app.app_context():
        stored = db.session.execute(select(TotpCredential.sealed_secret)).scalar_one()
        hashes = db.session.execute(select(RecoveryCode.code_hash)).scalars().all()
    assert totp.secret not in stored and stored.startswith("v1.")
    assert len(hashes) == 10 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


def test_AUTH_26_pending_sign_in_expires(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], clock: Any
) -> None:
    client, totp, _ = enrolled
    clock.move_to(T0 + timedelta(minutes=20))
    sign_in(client)
    page = client.get("/sign-in/second-factor")  # the form, while the sign-in is fresh
    clock.move_to(T0 + timedelta(minutes=26))
    answer = client.post(
        "/sign-in/second-factor", data={"csrf_token": csrf_token(page.data), "code": totp.now()}
    )
    assert answer.status_code == 303 and answer.location == "/sign-in"
    assert not signed_in_as(client)


def test_mfa_policy_leads_a_user_without_a_factor_through_set_up(
    app_factory: Any, mailbox: Mailbox
) -> None:
    from tests.functional.conftest import add_user

    app = app_factory(mfa_required=True)
    add_user(app, "bob@example.org")
    client = app.test_client()
    answer = sign_in(client, "bob@example.org")
    assert answer.location.startswith("/sign-in/set-up-authenticator")
    assert not signed_in_as(client)
    page = client.get("/sign-in/set-up-authenticator")
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret
    done = client.post(
        "/sign-in/set-up-authenticator",
        data={
            "csrf_token": csrf_token(page.data),
            "code": pyotp.TOTP(secret.group(1).replace(" ", "")).now(),
        },
    )
    assert done.status_code == 200 and 'href="/account"' in done.text  # codes, then on
    assert signed_in_as(client)
    # Policy requires a factor: the last one cannot be removed.
    post_security(client, "/account/security/authenticator/remove", {"current_password": PASSWORD})
    assert "On:" in client.get("/account/security").text


def test_sign_in_without_a_factor_stays_one_step(app: Flask, signed_in: FlaskClient) -> None:
    assert [s.amr for s in login_session(app)] == [["pwd"]]


def test_AUTH_21_codes_two_steps_away_are_refused(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], clock: Any
) -> None:
    client, totp, _ = enrolled
    now = T0 + timedelta(minutes=15)
    clock.move_to(now)
    sign_in(client)
    assert second_step(client, totp.at(now - timedelta(seconds=60))).status_code == 400
    assert second_step(client, totp.at(now + timedelta(seconds=60))).status_code == 400
    assert second_step(client, totp.at(now + timedelta(seconds=30))).status_code == 303


def test_AUTH_15_a_password_reset_ends_in_the_second_step(
    enrolled: tuple[FlaskClient, pyotp.TOTP, list[str]], mailbox: Mailbox, clock: Any
) -> None:
    client, totp, _ = enrolled
    form_post(client, "/forgot-password", {"email": "alice@example.org"})
    link = mailbox.last_link("alice@example.org")
    new_password = "a brand new passphrase 42"
    answer = form_post(client, link, {"password": new_password})
    assert answer.status_code == 303
    assert not signed_in_as(client)
    answer = sign_in(client, password=new_password)
    assert answer.location.startswith("/sign-in/second-factor")
    assert not signed_in_as(client)
    assert second_step(client, totp.now()).status_code == 303
    assert signed_in_as(client)


def test_AUTH_11_holders_of_a_listed_role_must_use_a_second_factor(app_factory: Any) -> None:
    """IDENTITY_MFA_REQUIRED_ROLES=admin: an administrator without a factor sets one up at
    sign-in and cannot remove it; a user without the role signs in with the password."""
    from tests.functional.conftest import add_user

    app = app_factory(mfa_required_roles="admin, auditor")
    add_user(app, "root@example.org", roles=("admin",))
    add_user(app, "plain@example.org")
    admin = app.test_client()
    assert sign_in(admin, "root@example.org").location.startswith("/sign-in/set-up-authenticator")
    assert not signed_in_as(admin)
    plain = app.test_client()
    assert sign_in(plain, "plain@example.org").location == "/account"
    # Enrolled, the administrator cannot remove the only factor.
    page = admin.get("/sign-in/set-up-authenticator")
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret
    admin.post(
        "/sign-in/set-up-authenticator",
        data={
            "csrf_token": csrf_token(page.data),
            "code": pyotp.TOTP(secret.group(1).replace(" ", "")).now(),
        },
    )
    assert signed_in_as(admin)
    post_security(admin, "/account/security/authenticator/remove", {"current_password": PASSWORD})
    assert "On:" in admin.get("/account/security").text
