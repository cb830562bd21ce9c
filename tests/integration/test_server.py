"""The real server and the real ``identity`` command, over HTTP and in subprocesses."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import click
import pytest
import requests
from click.testing import CliRunner

from tests.conftest import PASSWORD
from tests.integration.conftest import (
    IDENTITY,
    Harness,
    Instance,
    Server,
    free_port,
    sign_in,
    wait_for,
)

PUBLIC_COMMANDS = {
    "init",
    "serve",
    "check",
    "users create",
    "invites create",
    "db upgrade",
    "db downgrade",
    "db current",
}


@dataclass
class Site:
    server: Server
    first_init: str
    second_init: str


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness) -> Site:
    """One server for the module, on an instance initialised twice."""
    instance = module_identity_factory.instance()
    first = instance.cli("init").stdout
    second = instance.cli("init").stdout
    return Site(module_identity_factory.server(instance), first, second)


@pytest.fixture(scope="module")
def bare(module_identity_factory: Harness) -> Instance:
    """An instance whose database `identity init` never touched; nothing serves it."""
    return module_identity_factory.instance()


def test_sign_in_over_http(site: Site) -> None:
    """A user made with `users create --password-stdin --verified` signs in over real HTTP."""
    site.server.instance.create_user("carol@example.org", PASSWORD)
    http = requests.Session()

    wrong = sign_in(http, site.server.url, "carol@example.org", "not the password at all")
    assert wrong.status_code == 200
    assert "not correct" in wrong.text
    assert http.get(site.server.url + "/account", allow_redirects=False).status_code == 302

    response = sign_in(http, site.server.url, "carol@example.org", PASSWORD)
    assert response.history and response.history[0].status_code == 303
    assert response.url == site.server.url + "/account"
    assert response.status_code == 200
    assert "carol@example.org" in response.text
    assert "HttpOnly" in response.history[0].headers["Set-Cookie"]


def test_init_is_idempotent_and_shows_the_admin_password_once(site: Site) -> None:
    """The first `identity init` prints a working admin password; the second prints none."""
    match = re.search(r"email:\s+(\S+)\n\s+password:\s+(\S+)", site.first_init)
    assert match, site.first_init
    assert "password" not in site.second_init
    assert "up to date" in site.second_init

    http = requests.Session()
    response = sign_in(http, site.server.url, match.group(1), match.group(2))
    assert response.url == site.server.url + "/account", response.text


def test_check_accepts_a_good_configuration(site: Site) -> None:
    """`identity check` on a migrated instance reports what is in use and exits 0."""
    result = site.server.instance.cli("check")
    assert "configuration OK" in result.stdout
    assert "registration: open; mail: file" in result.stdout


def test_health_probes(site: Site) -> None:
    """/healthz and /readyz answer 200 with a bare status, uncached and never rate-limited."""
    for path in ("/healthz", "/readyz"):
        for _ in range(15):
            response = requests.get(site.server.url + path, timeout=10)
            assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["Cache-Control"] == "no-store"


def test_serve_opens_no_shared_control_socket(site: Site) -> None:
    """gunicorn's control socket (one path per user, shared by every instance) stays off."""
    assert requests.get(site.server.url + "/healthz", timeout=10).status_code == 200
    assert "Control socket" not in site.server.log()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDENTITY_ISSUER", "ftp://x"),
        ("IDENTITY_REGISTRATION", "maybe"),
        ("IDENTITY_SMTP_PORT", "0"),
        ("IDENTITY_DATABASE_URL", "mysql://db/identity"),
    ],
)
def test_check_names_a_bad_setting_in_one_line(bare: Instance, name: str, value: str) -> None:
    """`identity check` exits non-zero with one line on stderr that names the bad setting."""
    result = bare.cli("check", check=False, **{name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert result.stdout == ""


def test_serve_refuses_a_bad_setting(bare: Instance) -> None:
    """`identity serve` with an invalid value stops at once with one line naming it."""
    result = bare.cli(
        "serve", "--port", str(free_port()), check=False, IDENTITY_REGISTRATION="maybe"
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: invalid configuration: IDENTITY_REGISTRATION: "
        "Input should be 'open', 'invite' or 'closed'"
    ]


@pytest.mark.parametrize(
    "command",
    [["init"], ["serve"], ["db", "current"], ["users", "create", "x@example.org"]],
    ids=" ".join,
)
def test_unreachable_database_is_one_line(bare: Instance, command: list[str]) -> None:
    """Commands facing a database that refuses connections exit non-zero with one line."""
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/identity"
    if command == ["serve"]:
        command = ["serve", "--port", str(free_port())]
    result = bare.cli(*command, check=False, IDENTITY_DATABASE_URL=unreachable)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: database error: ")
    assert "Connection refused" in lines[0]


def test_serve_refuses_an_unmigrated_database(bare: Instance) -> None:
    """`identity serve` on a database `identity init` never touched exits with advice."""
    command = [IDENTITY, "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    process = subprocess.Popen(
        command,
        env=bare.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0
    assert "run `identity init`" in stderr
    assert "Listening" not in stdout + stderr

    check = bare.cli("check", check=False)
    assert check.returncode != 0
    assert "run `identity init`" in check.stderr


def test_help_works_for_every_command() -> None:
    """`--help` succeeds for the entry point and for every command and subcommand."""
    result = subprocess.run([IDENTITY, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Usage: identity" in result.stdout

    from identity.cli import cli, commands, db_commands, users  # noqa: F401 - registers

    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(cli, [])
    assert PUBLIC_COMMANDS.issubset(" ".join(p) for p in paths)
    runner = CliRunner()
    for path in paths:
        outcome = runner.invoke(cli, [*path, "--help"], prog_name="identity")
        assert outcome.exit_code == 0, (path, outcome.output)
        assert outcome.output.startswith(f"Usage: {' '.join(['identity', *path])}"), outcome.output


def test_db_commands_downgrade_and_upgrade(identity_factory: Harness) -> None:
    """`identity db current|downgrade base|upgrade` move the schema and report the revision."""
    instance = identity_factory.instance()
    instance.cli("init")
    assert instance.cli("db", "downgrade", "base").stdout.strip() == "at revision None"
    assert instance.cli("db", "current").stdout.startswith("none (newest: ")
    head = instance.cli("db", "upgrade").stdout.strip()
    assert head.startswith("at revision ") and head != "at revision None"
    assert instance.cli("db", "current").stdout.strip().endswith("(head)")


def not_answering(url: str) -> bool:
    """Whether a new request goes unanswered (the server stopped accepting work)."""
    try:
        requests.get(url + "/healthz", timeout=2)
    except requests.RequestException:
        return True
    return False


def test_sigterm_lets_an_in_flight_request_finish(identity_factory: Harness) -> None:
    """A request whose body is still arriving when SIGTERM comes is answered, then the
    server exits 0 (graceful shutdown)."""
    server = identity_factory.server()
    host, port = server.url.removeprefix("http://").split(":")
    body = b"email=late%40example.org&password=x&csrf_token=none"
    head = (
        f"POST /sign-in HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(head + body[:10])
        time.sleep(0.3)  # the worker is now inside the app, reading the form
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: not_answering(server.url), what="the server to stop answering")
        connection.sendall(body[10:])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # no CSRF token: a full answer
    assert server.stop() == 0


def test_sigterm_again_while_stopping_still_exits_0(identity_factory: Harness) -> None:
    """A process manager or an operator may send SIGTERM more than once: a server that is
    already stopping finishes its clean stop instead of dying of the signal."""
    server = identity_factory.server()
    deadline = time.monotonic() + 40
    while server.process.poll() is None and time.monotonic() < deadline:
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    server.exit_code = server.process.wait(timeout=5)
    assert server.exit_code == 0
    assert '"event": "server.stopped"' in server.log()
