"""Who may open the console: operators only, with a second factor by default, and each
page only with its permission (AUTHZ-01); the dashboard draws its charts on the server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from identity.admin.console import NAV
from tests.admin.conftest import ADMIN
from tests.conftest import PASSWORD, csrf_token, sign_in


def test_signed_out_goes_to_sign_in(client: FlaskClient) -> None:
    answer = client.get("/admin/")
    assert answer.status_code == 302
    assert answer.location.startswith("/sign-in?next=/admin/")


def test_AUTHZ_01_a_user_without_a_role_is_refused(operator: Any) -> None:
    answer = operator().get("/admin/")
    assert answer.status_code == 403
    assert "for operators" in answer.text


def test_dashboard_counts_and_charts(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    make_user("bob@example.org")
    sign_in(app.test_client(), "bob@example.org", "not the password")
    page = admin.get("/admin/")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"]  # the same CSP as every page
    text = page.text
    assert '<span class="stat">2</span> users' in text
    assert text.count('<svg viewBox="0 0 600 160" role="img"') == 2
    assert "user.sign_in: invalid_password" in text or "user.sign_in: " in text
    assert 'class="failed"' in text  # bob's failure is drawn


def test_dashboard_counts_the_sessions_the_sessions_page_lists(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    """A session idle past session_idle_timeout has ended: the dashboard does not count it,
    as /admin/sessions does not list it, though its absolute timeout is still ahead."""
    from sqlalchemy import update

    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.session import LoginSession
    from identity.models.user import user_by_email

    make_user("bob@example.org")
    assert sign_in(app.test_client(), "bob@example.org").status_code == 303
    assert '<span class="stat">2</span> active sessions' in admin.get("/admin/").text
    idle = timedelta(seconds=app.extensions["identity"].settings.session_idle_timeout + 60)
    with app.app_context():
        bob = user_by_email(db.session, "bob@example.org")
        assert bob is not None
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == bob.id)
            .values(last_seen_at=utcnow() - idle)
        )
        db.session.commit()
    assert "bob@example.org" not in admin.get("/admin/sessions").text
    assert '<span class="stat">1</span> active sessions' in admin.get("/admin/").text


def test_auditor_sees_only_what_it_may(operator: Any) -> None:
    page = operator("auditor").get("/admin/").text
    nav = page.split('aria-label="Admin console"', 1)[1].split("</nav>", 1)[0]
    assert "Dashboard" in nav


def test_nav_lists_only_permitted_pages() -> None:
    endpoints = [endpoint for endpoint, _, _ in NAV]
    assert endpoints[0] == "admin.dashboard"
    assert len(endpoints) == len(set(endpoints))


def test_AUTHZ_13_console_users_need_a_second_factor_by_default(
    app_factory: Any, make_user: Any
) -> None:
    app = app_factory()  # admin_mfa_required stays on, as in production
    make_user(ADMIN, roles=("admin",))
    client = app.test_client()
    assert sign_in(client, ADMIN).status_code == 303
    answer = client.get("/admin/")
    assert answer.status_code == 302
    assert answer.location.startswith("/sign-in/step-up?")
    # The step-up sends a user without a factor to set one up, then back to the console.
    setup = client.get(answer.location)
    assert setup.status_code in (302, 303)
    page = client.get(setup.location)
    assert page.status_code == 200, page.text
    secret = page.text.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0]
    totp = pyotp.TOTP(secret.replace(" ", ""))
    done = client.post(
        setup.location, data={"csrf_token": csrf_token(page.data), "code": totp.now()}
    )
    assert done.status_code == 200
    assert "/admin/" in done.text  # the recovery codes page links on to the console
    assert client.get("/admin/").status_code == 200
    assert PASSWORD  # the password alone did not open it


def test_AUTHZ_13_the_admin_api_from_a_browser_needs_a_second_factor_too(
    app_factory: Any, make_user: Any
) -> None:
    """The console's door and the API's browser door are the same: a password-only session
    of an admin gets a 403 problem from /api/v1, not the data."""
    app = app_factory()
    make_user(ADMIN, roles=("admin",))
    client = app.test_client()
    assert sign_in(client, ADMIN).status_code == 303
    answer = client.get("/api/v1/users")
    assert answer.status_code == 403
    assert "second factor" in answer.json["detail"]


def test_the_dashboard_shows_audit_figures_only_to_audit_readers(operator: Any) -> None:
    """Failure reasons and security events come from the audit trail: a user manager (no
    audit:read) sees the counts and charts, not them."""
    manager = operator("user-manager").get("/admin/").text
    assert "Sign-ins" in manager
    assert "Top failure reasons" not in manager and "Recent security events" not in manager
    auditor = operator("auditor").get("/admin/").text
    assert "Top failure reasons" in auditor and "Recent security events" in auditor
