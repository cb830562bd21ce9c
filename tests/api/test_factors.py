"""/api/v1/users/{id}/factors: operators see and reset a user's second factors (AUTH-30)."""

from __future__ import annotations

import uuid
from typing import Any

import pyotp
from click.testing import CliRunner
from flask import Flask

from tests.api.conftest import Api
from tests.conftest import Mailbox


def enrolled_user(app: Flask, make_user: Any, email: str) -> uuid.UUID:
    from identity.auth.service import Factors
    from identity.extensions import db
    from identity.models.user import User
    from identity.runtime import runtime

    user_id: uuid.UUID = make_user(email)
    with app.app_context():
        user = db.session.get(User, user_id)
        enrolment = runtime().totp.begin(db.session, user)
        codes = Factors(db.session, runtime()).confirm_totp(
            user, pyotp.TOTP(enrolment.secret).now()
        )
        assert codes is not None
        db.session.commit()
    return user_id


def test_AUTH_30_reset_a_users_factors(
    app: Flask, admin_api: Api, make_user: Any, mailbox: Mailbox
) -> None:
    """The user is told by mail, the reset is audited, and the factors are gone."""
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    user_id = enrolled_user(app, make_user, "lost@example.org")
    assert admin_api.get(f"/users/{user_id}/factors").json == {
        "totp": True,
        "recovery_codes_left": 10,
    }
    assert admin_api.delete(f"/users/{user_id}/factors").status_code == 204
    assert admin_api.get(f"/users/{user_id}/factors").json == {
        "totp": False,
        "recovery_codes_left": 0,
    }
    assert mailbox.to("lost@example.org")[-1]["Subject"] == (
        "The second sign-in step of your account was reset"
    )
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(event="mfa.factors_reset").one()
        assert event.subject_id == user_id
        assert event.data["removed"] is True


def test_AUTH_30_reset_from_the_command_line(app: Flask, make_user: Any, monkeypatch: Any) -> None:
    from identity.cli import cli
    from identity.cli import users as _  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())
    enrolled_user(app, make_user, "phone@example.org")
    runner = CliRunner()
    result = runner.invoke(cli, ["users", "reset-factors", "phone@example.org"])
    assert result.exit_code == 0, result.output
    assert "second factors of phone@example.org reset" in result.output
    again = runner.invoke(cli, ["users", "reset-factors", "phone@example.org"])
    assert "were already none" in again.output
