"""REL-09: `check` and `serve` refuse to run without usable signing keys."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from identity.cli import cli
from identity.cli import commands as _  # noqa: F401 - registers the commands


@pytest.fixture
def cli_env(app, monkeypatch):
    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())
    return monkeypatch


def test_REL_09_check_refuses_a_database_without_signing_keys(cli_env):
    """With no signing key at all, `identity check` fails and says to run init."""
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1
    assert "run `identity init`" in result.output


def test_REL_09_check_refuses_keys_under_another_secret(cli_env, keys_created):
    """Keys encrypted under another secret key stop `check` and `serve` with one clear line."""
    cli_env.setenv("IDENTITY_SECRET_KEY", "a-different-secret-key-" + "z" * 32)
    for command in (["check"], ["serve", "--port", "1"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, command
        assert "IDENTITY_SECRET_KEY" in result.output and "Traceback" not in result.output


def test_check_accepts_usable_keys(cli_env, keys_created):
    """With keys that decrypt, `identity check` reports the configuration OK."""
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert "configuration OK" in result.output


@pytest.fixture
def keys_created(app):
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, ("ES256", "RS256"))
        db.session.commit()
