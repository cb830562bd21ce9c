"""Real server processes for the integration tests.

``identity_factory`` (one per test) and ``module_identity_factory`` (one per test module, so
the tests of a module can share a server) hand out a ``Harness``. ``harness.server(**env)``
creates a fresh instance folder and database (SQLite, or a new PostgreSQL database when
``IDENTITY_TEST_DATABASE_URL`` is set), runs ``identity init``, starts
``identity serve --workers 2`` on a free loopback port and waits for /readyz. On teardown
every server gets SIGTERM and must exit 0 with no process of its group left (graceful
shutdown), having logged only JSON lines and no error; the databases are dropped.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_DATABASE_URL, create_database, csrf_token, drop_database

BIN = Path(sys.executable).parent
IDENTITY = str(BIN / "identity")
START_TIMEOUT = 30.0
WORKERS = 2  # every server the harness starts: `identity serve --workers 2`
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 30 s


def require(available: bool, reason: str) -> None:
    """Skip when a browser or service is missing, but fail under IDENTITY_REQUIRE_ALL_TESTS=1."""
    if available:
        return
    if os.environ.get("IDENTITY_REQUIRE_ALL_TESTS") == "1":
        pytest.fail(f"{reason} (IDENTITY_REQUIRE_ALL_TESTS=1 forbids skipping)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_environment() -> dict[str, str]:
    """This process's environment without any IDENTITY_* setting of the developer's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}


@dataclass
class Instance:
    """An instance folder, its database and the environment every command gets."""

    path: Path
    database_url: str
    env: dict[str, str]

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``identity ARGS`` with this instance's environment (plus ``env``)."""
        result = subprocess.run(
            [IDENTITY, *args],
            env={**self.env, **env},
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"identity {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def create_user(self, email_address: str, password: str) -> None:
        self.cli(
            "users",
            "create",
            email_address,
            "--password-stdin",
            "--verified",
            input=password + "\n",
        )

    @property
    def outbox(self) -> Path:
        return self.path / "outbox"


@dataclass
class Server:
    instance: Instance
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    exit_code: int | None = field(default=None)
    # Set by a test that makes the server log errors on purpose.
    errors_expected: bool = field(default=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def bad_log_lines(self) -> list[str]:
        """Log lines that are not JSON objects, or that report an error."""
        bad = []
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if not isinstance(entry, dict) or entry.get("level") in ("error", "critical"):
                bad.append(line)
        return bad

    def workers_started(self) -> int:
        """How many workers granian says serve (``Started worker-N``, one line each)."""
        return len(re.findall(r'"msg": "Started worker-\d+"', self.log()))

    def wait_ready(self, workers: int = WORKERS) -> None:
        """/readyz answers and every worker serves.

        One worker's answer is not enough: the other may still be loading the app, and a
        test that signals the server then would test the start-up instead of what it means
        to (test_sigterm_while_the_workers_load_the_app tests that moment on purpose).
        """
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"server exited {code} while starting:\n{self.log()}")
            try:
                ready = requests.get(self.url + "/readyz", timeout=5).status_code == 200
                if ready and self.workers_started() >= workers:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or no worker up yet to answer
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM, then wait; kill the whole process group if anything is left."""
        if self.exit_code is not None:
            return self.exit_code
        pgid = self.process.pid  # start_new_session: the master leads its own group
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            self.exit_code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"server ignored SIGTERM for {STOP_TIMEOUT} s:\n{self.log()}"
            ) from None
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"worker processes outlived the master:\n{self.log()}")
        return self.exit_code


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Harness:
    """Creates instances and servers, and stops and removes all of them at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.instances: list[Instance] = []
        self.servers: list[Server] = []

    def instance(self, **env: str) -> Instance:
        """A fresh instance folder and empty (un-migrated) database; nothing runs yet."""
        path = self.root / f"instance{len(self.instances)}"
        path.mkdir(parents=True)
        if TEST_DATABASE_URL.startswith("postgresql"):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            database_url = create_database(f"identity_it_{worker}_{uuid.uuid4().hex[:8]}")
        else:
            database_url = f"sqlite:///{path / 'identity.db'}"
        full_env = {
            **base_environment(),
            "IDENTITY_INSTANCE_PATH": str(path),
            "IDENTITY_DATABASE_URL": database_url,
            **env,
        }
        instance = Instance(path, database_url, full_env)
        self.instances.append(instance)
        return instance

    def server(
        self, instance: Instance | None = None, *, host_name: str = "127.0.0.1", **env: str
    ) -> Server:
        """Start ``identity serve`` (after ``identity init`` on a new instance), ready. It
        listens on 127.0.0.1; ``host_name`` is the issuer's (WebAuthn needs a domain name,
        such as ``localhost``, where an IP address will not do)."""
        if instance is None:
            instance = self.instance(**env)
            instance.cli("init")
        port = free_port()
        url = f"http://{host_name}:{port}"
        log_path = instance.path / f"server-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    IDENTITY,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(WORKERS),
                ],
                env={**instance.env, "IDENTITY_ISSUER": url, **env},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(instance, process, url, log_path)
        self.servers.append(server)
        server.wait_ready()
        return server

    def close(self) -> None:
        problems = []
        for server in self.servers:
            try:
                code = server.stop()
            except AssertionError as error:
                problems.append(str(error))
                continue
            if code != 0:
                problems.append(f"server exited {code} after SIGTERM:\n{server.log()}")
            elif not server.errors_expected and server.bad_log_lines():
                lines = "\n".join(server.bad_log_lines())
                problems.append(f"error or non-JSON lines in the server log:\n{lines}")
        for instance in self.instances:
            if instance.database_url.startswith("postgresql"):
                drop_database(instance.database_url)
        assert not problems, "\n\n".join(problems)


@pytest.fixture
def identity_factory(tmp_path: Path) -> Iterator[Harness]:
    """Servers and instances that live for one test."""
    harness = Harness(tmp_path / "identity")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="module")
def module_identity_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Servers and instances shared by the tests of one module."""
    harness = Harness(tmp_path_factory.mktemp("identity"))
    try:
        yield harness
    finally:
        harness.close()


# HTTP helpers ---------------------------------------------------------------------------


def post_form(
    session: requests.Session, url: str, data: dict[str, str], page_url: str | None = None
) -> requests.Response:
    """GET the page for its CSRF token (and cookies), then POST the form as a browser does."""
    page = session.get(page_url or url, timeout=10)
    assert page.status_code == 200, page.text
    return session.post(url, data={"csrf_token": csrf_token(page.text), **data}, timeout=10)


def sign_in(
    session: requests.Session, base_url: str, email_address: str, password: str
) -> requests.Response:
    return post_form(session, base_url + "/sign-in", {"email": email_address, "password": password})


# Mail helpers ---------------------------------------------------------------------------

LINK = re.compile(r"https?://[^/\s]+(/\S+)")


def parse_mail(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def link_in(message: EmailMessage) -> str:
    """The path of the first link in a message."""
    body = message.get_content()
    match = LINK.search(body)
    assert match, body
    return match.group(1)


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` returns something truthy and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def outbox_mail(instance: Instance, to: str, subject: str, count: int = 1) -> EmailMessage:
    """Wait until ``count`` messages to ``to`` with ``subject`` are in the file outbox;
    return the newest."""

    def messages() -> list[EmailMessage]:
        if not instance.outbox.is_dir():
            return []
        paths = sorted(instance.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        found = [parse_mail(p.read_bytes()) for p in paths]
        found = [m for m in found if m["To"] == to and m["Subject"] == subject]
        return found if len(found) >= count else []

    found = wait_for(messages, what=f"{count} {subject!r} message(s) to {to}")
    return found[-1]  # type: ignore[no-any-return]
