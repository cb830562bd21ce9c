"""The real server and the real ``identity`` command, over HTTP and in subprocesses."""

from __future__ import annotations

import json
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

from identity.serving import GRACEFUL_TIMEOUT
from tests.conftest import PASSWORD
from tests.integration.conftest import (
    IDENTITY,
    START_TIMEOUT,
    STOP_TIMEOUT,
    WORKERS,
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
    result = subprocess.run(
        [IDENTITY, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
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
    assert instance.cli("db", "downgrade", "base", "--yes").stdout.strip() == "at revision None"
    assert instance.cli("db", "current").stdout.startswith("none (newest: ")
    head = instance.cli("db", "upgrade").stdout.strip()
    assert head.startswith("at revision ") and head != "at revision None"
    assert instance.cli("db", "current").stdout.strip().endswith("(head)")


def workers_stopping(server: Server) -> int:
    """How many workers began their graceful stop (``Stopping worker-N``, one line each)."""
    return len(re.findall(r'"msg": "Stopping worker-\d+"', server.log()))


def not_answering(url: str) -> bool:
    """Whether a new request goes unanswered (the server stopped accepting work)."""
    try:
        requests.get(url + "/healthz", timeout=2)
    except requests.RequestException:
        return True
    return False


FORM = b"email=late%40example.org&password=x&csrf_token=none"


def request_waiting_for_its_body(server: Server) -> socket.socket:
    """A connection whose POST a worker has taken and whose body it now waits for.

    The request asks ``Expect: 100-continue``: the server sends "100 Continue" when the
    worker starts reading the body, the moment after which the request is in flight."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /sign-in HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        "Expect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(FORM)}\r\n\r\n"
    ).encode()
    connection = socket.create_connection((host, int(port)), timeout=20)
    connection.sendall(head)
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = connection.recv(1)  # a byte at a time: nothing past the interim answer
        assert chunk, f"connection closed after {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    return connection


def finish(connection: socket.socket, rest: bytes) -> bytes:
    """Send the rest of the body; return the whole answer."""
    connection.sendall(rest)
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def test_sigterm_lets_an_in_flight_request_finish(identity_factory: Harness) -> None:
    """A request whose body is still arriving when SIGTERM comes is answered, then the
    server exits 0 (graceful shutdown)."""
    server = identity_factory.server()
    with request_waiting_for_its_body(server) as connection:
        connection.sendall(FORM[:10])
        server.process.send_signal(signal.SIGTERM)
        # Every worker took the stop (granian logs it as it begins), so no new request is
        # served from now on, and the one in flight is still waiting for its body.
        try:
            wait_for(lambda: workers_stopping(server) >= WORKERS, what="the workers to stop")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{server.log()}") from None
        assert not_answering(server.url), server.log()
        answer = finish(connection, FORM[10:])
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # no CSRF token: a full answer
    assert server.stop() == 0


def start_serve(harness: Harness, instance: Instance) -> Server:
    """``identity serve`` on a free port, as the harness starts it, without waiting."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = instance.path / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [IDENTITY, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env={**instance.env, "IDENTITY_ISSUER": url},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(instance, process, url, log_path)
    harness.servers.append(server)  # stopped, checked and cleaned up as the others
    return server


def log_events(server: Server, event: str) -> list[dict[str, object]]:
    """The server's log entries of ``event`` so far (the teardown checks all are JSON)."""
    entries = []
    for line in server.log().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line still being written
    return [entry for entry in entries if entry.get("event") == event]


def test_sigterm_again_while_stopping_still_exits_0(identity_factory: Harness) -> None:
    """A process manager or an operator may send SIGTERM more than once: a server that is
    already stopping finishes its clean stop instead of dying of the signal or hanging.

    A request in flight holds the server in its stopping phase (its worker waits to answer
    it) while a thousand more SIGTERMs come; then the request completes, and SIGTERMs keep
    coming until the master has exited."""
    server = identity_factory.server()
    with request_waiting_for_its_body(server) as connection:
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: log_events(server, "server.stopping"), what="the server to stop")
        sent, deadline = 0, time.monotonic() + 10
        while sent < 1000 and time.monotonic() < deadline:
            server.process.send_signal(signal.SIGTERM)
            sent += 1
            time.sleep(0.001)
        # Still stopping: the worker waits for the request's body (for up to 30 seconds).
        assert server.process.poll() is None, server.log()
        answer = finish(connection, FORM)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    deadline = time.monotonic() + STOP_TIMEOUT
    while server.process.poll() is None and time.monotonic() < deadline:
        server.process.send_signal(signal.SIGTERM)  # also while the interpreter exits
        time.sleep(0.001)
    server.exit_code = server.process.wait(timeout=5)
    assert server.exit_code == 0, server.log()
    assert len(log_events(server, "server.stopping")) == 1
    assert [entry["exit_code"] for entry in log_events(server, "server.stopped")] == [0]
    assert "refused to gracefully stop" not in server.log()


def test_sigterm_while_the_workers_load_the_app(identity_factory: Harness) -> None:
    """A SIGTERM as the server starts reaches workers that are still loading the app (the
    master starts them and stops them within milliseconds; loading takes far longer), before
    granian's handlers are in place: they stop all the same, and the server exits 0 at once
    instead of killing them 30 seconds later."""
    instance = identity_factory.instance()
    instance.cli("init")
    server = start_serve(identity_factory, instance)
    deadline = time.monotonic() + START_TIMEOUT
    while not log_events(server, "server.listening"):  # logged just before the workers start
        assert server.process.poll() is None and time.monotonic() < deadline, server.log()
        time.sleep(0.001)
    server.process.send_signal(signal.SIGTERM)
    try:
        server.exit_code = server.process.wait(timeout=GRACEFUL_TIMEOUT - 10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a worker missed its SIGTERM:\n{server.log()}") from None
    assert server.exit_code == 0, server.log()
    assert "refused to gracefully stop" not in server.log()


def test_serve_says_where_it_listens_once(site: Site) -> None:
    """`serve` logs one plain "listening on http://HOST:PORT" line (a JSON line like every
    other), and no note about websockets, which WSGI does not have."""
    listening = log_events(site.server, "server.listening")
    assert [entry["msg"] for entry in listening] == [f"listening on {site.server.url}"]
    assert "ebsocket" not in site.server.log()


def test_serve_refuses_an_address_in_use(site: Site) -> None:
    """A second `identity serve` on the port of a running one exits at once with one line
    naming the address; the first goes on serving alone."""
    address = site.server.url.removeprefix("http://")
    host, port = address.split(":")
    process = subprocess.Popen(
        [IDENTITY, "serve", "--host", host, "--port", port],
        env=site.server.instance.env,
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
    assert process.returncode == 1
    assert stderr.strip().splitlines() == [
        f"Error: cannot listen on {address}: address in use (is another server running?)"
    ]
    assert stdout == ""
    assert requests.get(site.server.url + "/healthz", timeout=10).status_code == 200
