"""First run (AUTH-09): no default credentials; the bootstrap admin gets a random password."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from identity.cli import cli
from identity.cli import commands as _commands  # noqa: F401 - registers `init`
from tests.conftest import csrf_token, make_app


@pytest.fixture
def init(tmp_path, monkeypatch):
    """Run `identity init` against a fresh SQLite database; returns (app, output)."""

    def run(name):
        instance = tmp_path / name
        url = f"sqlite:///{instance / 'identity.db'}"
        monkeypatch.delenv("IDENTITY_CONFIG", raising=False)
        monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(instance))
        monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
        monkeypatch.setenv("IDENTITY_RATELIMIT_ENABLED", "false")
        monkeypatch.setenv("IDENTITY_LOG_LEVEL", "WARNING")
        result = CliRunner().invoke(cli, ["init"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return make_app(instance, url, ratelimit_enabled=False), result.output

    return run


def password_in(output):
    match = re.search(r"^\s*password:\s*(\S+)\s*$", output, re.MULTILINE)
    return match.group(1) if match else None


def try_sign_in(app, email, password):
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").data)
    data = {"csrf_token": token, "email": email, "password": password}
    return client.post("/sign-in", data=data).status_code


def test_AUTH_09_bootstrap_admin_password_is_random_and_shown_once(init):
    """init prints a long random admin password, different on every installation."""
    app, output = init("first")
    _, other_output = init("second")
    password = password_in(output)
    assert password is not None and len(password) >= 20
    assert password != password_in(other_output)
    assert try_sign_in(app, "admin@example.com", password) == 303


def test_AUTH_09_default_credentials_do_not_open_a_fresh_install(init):
    """admin/admin and friends fail on a freshly initialised server."""
    app, _ = init("fresh")
    for password in ("admin", "changeme", "password", "admin123", "identity"):
        assert try_sign_in(app, "admin@example.com", password) == 200, password


def test_AUTH_09_bootstrap_runs_only_on_an_empty_database(init):
    """A second init creates no second admin and prints no password."""
    app, first = init("again")
    _, second = init("again")
    assert password_in(first)
    assert password_in(second) is None
    assert "bootstrap admin" not in second
    assert try_sign_in(app, "admin@example.com", password_in(first)) == 303
