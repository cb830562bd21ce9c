"""The `identity` command as an operator meets it in the first hour: real processes, on
SQLite and (with IDENTITY_TEST_DATABASE_URL) PostgreSQL.

What each command says and refuses: the schema it created, the folder and database in use,
a missing or schema-less database, an unusable instance folder, an unreachable database, a
misspelt setting, relative revisions and dropping every table, JSON log lines only when
asked, and the everyday commands (users list/show/set-password/delete, clients update)
against a running server.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from tests.conftest import PASSWORD
from tests.integration.conftest import (
    IDENTITY,
    Harness,
    Instance,
    Server,
    base_environment,
    free_port,
    sign_in,
    wait_for,
)
from tests.oauth.conftest import pkce_pair

pytestmark = pytest.mark.slow

REVISION = r"[0-9a-z_]+"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ready(module_identity_factory: Harness) -> Instance:
    """An instance after `identity init`, shared by the tests that only read or add."""
    instance = module_identity_factory.instance()
    instance.cli("init")
    return instance


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return module_identity_factory.server()


# init, check, and which database --------------------------------------------------------


def test_init_says_what_it_did_to_the_schema(identity_factory: Harness) -> None:
    """On a new database `init` says it created the schema and at which revision; run
    again, that the schema is up to date. The URL it names has no password."""
    instance = identity_factory.instance()
    first = instance.cli("init")
    assert re.search(rf"created the schema at revision {REVISION}\n", first.stdout), first.stdout
    assert "up to date" not in first.stdout
    second = instance.cli("init")
    assert re.search(rf"\(up to date, revision {REVISION}\)", second.stdout), second.stdout
    if instance.database_url.startswith("sqlite"):
        assert f"database: sqlite:///{instance.path / 'identity.db'}" in first.stdout
    assert first.stderr == second.stderr == ""


def test_check_prints_the_full_paths_in_use(ready: Instance) -> None:
    """`check` names the instance folder and the database in full (for SQLite, the file)."""
    result = ready.cli("check")
    assert f"instance folder: {ready.path}\n" in result.stdout
    if ready.database_url.startswith("sqlite"):
        assert f"database: sqlite:///{ready.path / 'identity.db'}\n" in result.stdout
    else:
        database = ready.database_url.rsplit("/", 1)[1]
        assert re.search(rf"database: postgresql\S*/{database}\n", result.stdout), result.stdout
    assert re.search(rf"schema: revision {REVISION} \(the newest\)", result.stdout)
    assert "configuration OK" in result.stdout


def test_check_shows_why_the_database_is_unreachable(ready: Instance) -> None:
    """`check` gives the driver's reason in one line, never the password of the URL."""
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/identity"
    result = ready.cli("check", check=False, IDENTITY_DATABASE_URL=url)
    line = one_line(result)
    assert line.startswith("Error: database unreachable: ")
    assert "Connection refused" in line
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "database: postgresql://postgres:***@127.0.0.1" in result.stdout


def test_commands_elsewhere_create_nothing_and_say_where_they_looked(tmp_path: Path) -> None:
    """Run from another directory with the default (relative) instance folder, a command
    names the full path it looked at and says to run init; no ./instance appears."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["clients", "list"], ["users", "list"], ["check"]):
        result = subprocess.run(
            [IDENTITY, *command],
            cwd=elsewhere,
            env=base_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        line = one_line(result)
        assert f"no database at {elsewhere.resolve() / 'instance' / 'identity.db'}" in line
        assert "relative to the current directory" in line
        assert line.endswith("run `identity init` first")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [["clients", "list"], ["users", "list"], ["keys", "list"], ["purge"]],
    ids=" ".join,
)
def test_a_database_without_the_schema_is_refused(
    identity_factory: Harness, command: list[str]
) -> None:
    """Against a database `identity init` never set up, commands say so in one line (not
    "no such table") and leave it as it was."""
    instance = identity_factory.instance()
    if instance.database_url.startswith("sqlite"):
        (instance.path / "identity.db").touch()  # an empty file: a database, no schema
    line = one_line(instance.cli(*command, check=False))
    assert "has no identity schema; run `identity init` first" in line
    assert "no such table" not in line
    current = instance.cli("db", "current")
    assert current.stdout.startswith("none (newest: ")


@pytest.mark.parametrize("folder", ["/sys/x", "/dev/null/x"])
@pytest.mark.parametrize(
    "command", [["init"], ["check"], ["serve"], ["clients", "list"]], ids=" ".join
)
def test_an_unusable_instance_folder_is_one_line(
    tmp_path: Path, folder: str, command: list[str]
) -> None:
    """An instance folder that cannot exist or be created stops each command with one line
    naming IDENTITY_INSTANCE_PATH and the reason, not a traceback."""
    if command == ["serve"]:
        command = ["serve", "--port", str(free_port())]
    result = subprocess.run(
        [IDENTITY, *command],
        cwd=tmp_path,
        env={**base_environment(), "IDENTITY_INSTANCE_PATH": folder},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_line(result)
    assert "IDENTITY_INSTANCE_PATH" in line
    assert any(
        reason in line
        for reason in (
            "not a folder",
            "Not a directory",
            "does not exist",
            "not permitted",
            "denied",
        )
    ), line


# settings ---------------------------------------------------------------------------------


def test_a_misspelt_variable_is_warned_about(ready: Instance) -> None:
    """An IDENTITY_* variable that is no setting is named on stderr, with the setting it
    most likely meant; the command still runs."""
    result = ready.cli("users", "list", IDENTITY_REGISTRATON="closed")
    assert result.stderr.splitlines() == [
        "warning: IDENTITY_REGISTRATON is not a setting and is ignored "
        "(did you mean IDENTITY_REGISTRATION?)"
    ]
    assert "admin@example.com" in result.stdout


def test_a_typo_in_the_toml_file_names_the_file_and_the_key(ready: Instance) -> None:
    """An unknown key in the TOML file is reported with the file and the key (and the
    closest setting), not as an environment variable."""
    path = ready.path / "settings.toml"
    path.write_text('registraton = "closed"\n')
    line = one_line(ready.cli("check", check=False, IDENTITY_CONFIG=str(path)))
    assert f"{path}: unknown setting 'registraton' (did you mean 'registration'?)" in line
    assert "IDENTITY_REGISTRATON" not in line


# migrations -------------------------------------------------------------------------------


def test_db_downgrade_takes_minus_one_and_asks_before_base(identity_factory: Harness) -> None:
    """`db downgrade -1` works as documented (and `-- -1` still does); `db downgrade base`
    refuses without a terminal unless --yes, and other commands then ask for init."""
    instance = identity_factory.instance()
    instance.cli("init")
    head = instance.cli("db", "current").stdout.split()[0]
    back = instance.cli("db", "downgrade", "-1").stdout.strip()
    assert back.startswith("at revision ") and back != f"at revision {head}"
    assert instance.cli("db", "upgrade").stdout.strip() == f"at revision {head}"
    assert instance.cli("db", "downgrade", "--", "-1").stdout.strip() == back
    instance.cli("db", "upgrade")

    refused = one_line(instance.cli("db", "downgrade", "base", input="", check=False))
    assert "drops every table" in refused and "--yes" in refused
    assert instance.cli("db", "current").stdout.strip() == f"{head} (head)"

    dropped = instance.cli("db", "downgrade", "base", "--yes", input="")
    assert dropped.stdout.strip() == "at revision None"
    line = one_line(instance.cli("clients", "list", check=False))
    assert line.endswith("has no identity schema; run `identity init` first")


# what commands print ------------------------------------------------------------------------


def test_commands_print_results_not_json_unless_debug(ready: Instance) -> None:
    """A write prints its result and no JSON audit line; IDENTITY_LOG_LEVEL=DEBUG adds the
    audit events on stderr. `purge` prints each count once."""
    created = ready.cli("users", "create", "quiet@example.org")
    assert created.stderr == ""
    assert len(created.stdout.splitlines()) == 2  # the id and the generated password

    loud = ready.cli("users", "create", "loud@example.org", IDENTITY_LOG_LEVEL="DEBUG")
    events = [json.loads(line) for line in loud.stderr.splitlines()]
    assert any(e.get("event") == "user.create" for e in events), loud.stderr

    purged = ready.cli("purge")
    assert purged.stderr == ""
    lines = purged.stdout.splitlines()
    assert "login_sessions: 0" in lines
    assert len(lines) == len(set(lines)) == len({line.split(":")[0] for line in lines})


def test_invitations_warn_when_registration_is_not_invite_only(ready: Instance) -> None:
    """In open registration `invites create` still prints the link, with a warning that no
    invitation is needed; in invite mode it warns of nothing."""
    opened = ready.cli("invites", "create")
    assert opened.stdout.strip().startswith("http://127.0.0.1:8000/register?invite=")
    assert opened.stderr.startswith("warning: IDENTITY_REGISTRATION is open: ")
    invited = ready.cli("invites", "create", IDENTITY_REGISTRATION="invite")
    assert invited.stderr == ""


def test_a_localhost_redirect_uri_is_refused_naming_the_loopback_address(
    ready: Instance,
) -> None:
    """`localhost` stays refused, and the message says what to register instead."""
    line = one_line(
        ready.cli(
            "clients",
            "create",
            "--name",
            "Local app",
            "--redirect-uri",
            "http://localhost:3000/cb",
            check=False,
        )
    )
    assert "http://127.0.0.1:3000/cb" in line
    assert "RFC 8252 section 8.3" in line


# everyday commands against a running server --------------------------------------------------


def test_users_list_show_set_password_and_delete(server: Server) -> None:
    """The account commands, seen from a browser: a new password ends the session it had,
    deleting ends the next one and the account, and both are audited."""
    instance = server.instance
    instance.create_user("dora@example.org", PASSWORD)
    listed = json.loads(instance.cli("users", "list", "--json").stdout)
    assert "dora@example.org" in [row["email"] for row in listed]
    assert any(
        line.startswith("dora@example.org  verified  -")
        for line in instance.cli("users", "list").stdout.splitlines()
    )

    browser = requests.Session()
    assert sign_in(browser, server.url, "dora@example.org", PASSWORD).url.endswith("/account")
    shown = json.loads(instance.cli("users", "show", "Dora@Example.org").stdout)
    assert shown["email"] == "dora@example.org" and shown["login_sessions"] == 1
    assert "password_hash" not in shown

    new_password = "a quite different passphrase"
    changed = instance.cli(
        "users", "set-password", "dora@example.org", "--password-stdin", input=new_password + "\n"
    )
    assert changed.stdout.startswith("password set for dora@example.org")
    assert browser.get(server.url + "/account", allow_redirects=False).status_code == 302
    assert sign_in(browser, server.url, "dora@example.org", new_password).url.endswith("/account")

    refused = one_line(
        instance.cli("users", "delete", "dora@example.org", input="n\n", check=False)
    )
    assert refused == "Aborted!"
    deleted = instance.cli("users", "delete", "dora@example.org", "--yes").stdout
    assert re.fullmatch(r"deleted dora@example\.org: receipt [0-9a-f]{32}\n", deleted)
    assert browser.get(server.url + "/account", allow_redirects=False).status_code == 302
    again = sign_in(requests.Session(), server.url, "dora@example.org", new_password)
    assert not again.url.endswith("/account")
    assert one_line(instance.cli("users", "show", "dora@example.org", check=False)) == (
        "Error: no user with email dora@example.org"
    )
    events = audit_events(instance)
    assert events.index("user.password_set") < events.index("gdpr.erased"), events


def audit_events(instance: Instance) -> list[str]:
    from identity.models.audit import AuditEvent

    engine = create_engine(instance.database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(select(AuditEvent.event).order_by(AuditEvent.seq)).scalars()
            )
    finally:
        engine.dispose()


def authorize_status(server: Server, client_id: str, redirect_uri: str) -> int:
    """What the running server answers an authorization request of the client."""
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        }
    )
    response = requests.get(f"{server.url}/authorize?{query}", allow_redirects=False, timeout=10)
    return response.status_code


def test_clients_update_reaches_the_running_server(server: Server) -> None:
    """A redirect URI added with `clients update` is accepted by the running server within
    a few seconds, keeping the client id; nothing else changes unless asked."""
    instance = server.instance
    created = json.loads(
        instance.cli(
            "clients",
            "create",
            "--name",
            "Shop",
            "--redirect-uri",
            "https://a.example/cb",
            "--json",
        ).stdout
    )
    client_id = created["client_id"]
    assert authorize_status(server, client_id, "https://a.example/cb") == 302
    assert authorize_status(server, client_id, "http://127.0.0.1:3000/cb") == 400

    updated = instance.cli(
        "clients",
        "update",
        client_id,
        "--add-redirect-uri",
        "http://127.0.0.1:3000/cb",
        "--name",
        "Shop 2",
    )
    assert updated.stdout == f"updated {client_id}: client_name, redirect_uris\n"
    started = time.monotonic()
    wait_for(
        lambda: authorize_status(server, client_id, "http://127.0.0.1:3000/cb") == 302,
        timeout=10,
        what="the added redirect URI to be accepted",
    )
    assert time.monotonic() - started < 10
    shown = json.loads(instance.cli("clients", "show", client_id).stdout)
    assert shown["client_name"] == "Shop 2"
    assert shown["redirect_uris"] == ["https://a.example/cb", "http://127.0.0.1:3000/cb"]
    assert shown["accepted_auth_methods"] == ["client_secret_basic", "client_secret_post"]
    assert instance.cli("clients", "update", client_id).stdout == "nothing changed\n"
    assert "client.update" in audit_events(instance)
