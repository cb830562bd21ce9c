"""`identity gdpr ...`: the inventory, operator erasure (now or after the cooling-off
period, cancelled), subject access exports with their verification, and reapplying
erasures after a restore."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from tests.conftest import sign_in
from tests.functional.conftest import audit_events
from tests.privacy.helpers import later, run_jobs, user_id_of

EMAIL = "alice@example.org"


@pytest.fixture
def cli(app: Flask, keys: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `identity ...` in-process against the test app's database and secret key."""
    from identity.cli import cli as command
    from identity.cli import gdpr_commands  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("IDENTITY_ISSUER", settings.issuer)

    def run(*args: str, code: int = 0, input: str | None = None) -> Any:
        result = CliRunner().invoke(command, list(args), input=input)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return run


def test_GDPR_11_inventory_lists_every_table(cli: Any) -> None:
    shown = cli("gdpr", "inventory").stdout
    assert "users: deleted; personal: id, email, name" in shown
    assert "audit_events: pseudonymised" in shown
    assert cli("gdpr", "inventory", "--markdown").stdout.startswith("| Table | Purpose")


def test_GDPR_05_erase_now_by_email_or_id(app: Flask, cli: Any, make_user: Any) -> None:
    alice = make_user(EMAIL)
    bob = make_user("bob@example.org")
    declined = cli("gdpr", "erase", EMAIL, "--reason", "ticket 7", "--now", input="n\n", code=1)
    assert "Aborted" in declined.output and user_id_of(app, EMAIL) == alice
    result = cli("gdpr", "erase", EMAIL, "--reason", "ticket 7", "--now", "--yes")
    assert re.search(rf"erased {EMAIL} \({alice}\): receipt [0-9a-f]{{32}}", result.stdout)
    cli("gdpr", "erase", str(bob), "--reason", "ticket 8", "--now", "--yes")
    missing = cli("gdpr", "erase", EMAIL, "--reason", "again", "--now", "--yes", code=1)
    assert "no user with email" in missing.output
    reasons = [e["data"]["reason"] for e in audit_events(app, "gdpr.erased")]
    assert reasons == ["ticket 7", "ticket 8"]


def test_GDPR_14_erase_after_the_cooling_off_period_and_cancel(
    app: Flask, cli: Any, make_user: Any
) -> None:
    """Without --now the account is disabled and erased later; an operator's request is
    not cancelled by the person signing in, only by cancel-erasure."""
    alice = make_user(EMAIL)
    shown = cli("gdpr", "erase", EMAIL, "--reason", "ticket 9", "--yes").stdout
    assert "will be erased on" in shown and "disabled until then" in shown
    assert sign_in(app.test_client(), EMAIL).status_code == 200  # disabled, not cancelled
    cli("gdpr", "cancel-erasure", EMAIL)
    assert sign_in(app.test_client(), EMAIL).status_code == 303
    assert "no erasure of" in cli("gdpr", "cancel-erasure", EMAIL, code=1).output
    cli("gdpr", "erase", str(alice), "--reason", "ticket 10", "--yes")
    assert run_jobs(app, later(7.1)) == 1
    assert "no user with id" in cli("gdpr", "cancel-erasure", str(alice), code=1).output


def test_GDPR_01_export_for_a_subject_access_request_and_verify_it(
    app: Flask, cli: Any, make_user: Any, tmp_path: Path
) -> None:
    alice = make_user(EMAIL)
    target = tmp_path / "alice.zip"
    result = cli("gdpr", "export", EMAIL, "--output", str(target))
    assert f"about {alice} to {target}" in result.stdout
    assert target.stat().st_mode & 0o077 == 0
    assert str(alice) in cli("gdpr", "verify-bundle", str(target)).stdout
    assert "gdpr.export_by_operator" in [e["event"] for e in audit_events(app)]

    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(target) as original, zipfile.ZipFile(forged, "w") as copy:
        for name in original.namelist():
            body = original.read(name)
            copy.writestr(name, body.replace(b"alice", b"eve") if name == "index.html" else body)
    refused = cli("gdpr", "verify-bundle", str(forged), code=1)
    assert "not genuine: index.html was changed after it was signed" in refused.output
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert (
        "not genuine: not an export bundle"
        in cli("gdpr", "verify-bundle", str(junk), code=1).output
    )


def test_GDPR_10_reapply_erasures_after_a_restore(app: Flask, cli: Any, make_user: Any) -> None:
    from identity.extensions import db
    from identity.models.user import User

    alice = make_user(EMAIL)
    cli("gdpr", "erase", EMAIL, "--reason", "asked", "--now", "--yes")
    assert cli("gdpr", "reapply-erasures").stdout == "erased again: 0 accounts\n"
    with app.app_context():  # an older backup is restored
        db.session.add(User(id=alice, email=EMAIL, password_hash="x"))
        db.session.commit()
    shown = cli("gdpr", "reapply-erasures").stdout
    assert shown.startswith("erased again: 1 account\n  receipt ")
    with app.app_context():
        assert db.session.get(User, alice) is None
