"""Mail over real SMTP: an aiosmtpd server on loopback receives what the server sends."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import requests
from aiosmtpd.controller import Controller

from tests.conftest import PASSWORD, csrf_token
from tests.integration.conftest import (
    Harness,
    Server,
    free_port,
    link_in,
    parse_mail,
    post_form,
    sign_in,
    wait_for,
)


class Inbox:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, list[str], EmailMessage]] = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self._lock:
            message = parse_mail(envelope.original_content or envelope.content)
            self._messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def wait_for(self, to: str, timeout: float = 15.0) -> tuple[str, list[str], EmailMessage]:
        def find() -> tuple[str, list[str], EmailMessage] | None:
            with self._lock:
                found = [m for m in self._messages if to in m[1]]
            return found[-1] if found else None

        return wait_for(find, timeout=timeout, what=f"an SMTP message to {to}")  # type: ignore[no-any-return]


def smtp_server(port: int, inbox: Inbox) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def smtp_env(port: int) -> dict[str, str]:
    return {
        "IDENTITY_MAIL_BACKEND": "smtp",
        "IDENTITY_SMTP_HOST": "127.0.0.1",
        "IDENTITY_SMTP_PORT": str(port),
        "IDENTITY_SMTP_TIMEOUT": "5",
        "IDENTITY_MAIL_FROM": "identity <noreply@identity.test>",
    }


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    inbox.port = free_port()
    controller = smtp_server(inbox.port, inbox)
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness, inbox: Inbox) -> Server:
    return module_identity_factory.server(**smtp_env(inbox.port))


def register(base_url: str, http: requests.Session, email_address: str) -> requests.Response:
    response = post_form(
        http, base_url + "/register", {"email": email_address, "password": PASSWORD, "name": "Dee"}
    )
    assert response.status_code == 200, response.text
    assert response.url == base_url + "/register/sent"
    assert "Check your inbox" in response.text
    return response


def test_register_verify_and_sign_in_through_smtp(server: Server, inbox: Inbox) -> None:
    """The verification mail arrives over SMTP and its link verifies the account."""
    http = requests.Session()
    register(server.url, http, "dee@example.org")

    mail_from, recipients, message = inbox.wait_for("dee@example.org")
    assert mail_from == "noreply@identity.test"
    assert recipients == ["dee@example.org"]
    assert message["Subject"] == "Verify your email address"
    assert message["Message-ID"]
    link = link_in(message)
    assert message.get_content().count(server.url + link) == 1  # built from the issuer

    assert sign_in(http, server.url, "dee@example.org", PASSWORD).url == server.url + "/sign-in"

    page = http.get(server.url + link, timeout=10)  # a GET only shows the button
    assert page.status_code == 200
    verified = http.post(server.url + link, data={"csrf_token": csrf_token(page.text)}, timeout=10)
    assert verified.url == server.url + "/sign-in"
    assert "Your email address is verified" in verified.text

    response = sign_in(http, server.url, "dee@example.org", PASSWORD)
    assert response.url == server.url + "/account"
    assert "dee@example.org" in response.text


def test_registration_answers_normally_while_smtp_is_down(identity_factory: Harness) -> None:
    """With no SMTP server, registering still shows "check your inbox"; the mail goes out
    on a retry once SMTP is back (REL-23)."""
    port = free_port()  # nothing listens here yet
    server = identity_factory.server(**smtp_env(port))
    http = requests.Session()
    register(server.url, http, "erin@example.org")
    wait_for(lambda: "mail delivery failed" in server.log(), what="the failed delivery log")

    inbox = Inbox()
    controller = smtp_server(port, inbox)
    try:
        _, _, message = inbox.wait_for("erin@example.org", timeout=30)
    finally:
        controller.stop()
    assert message["Subject"] == "Verify your email address"
    assert "Traceback" not in server.log()


def test_REL_01_mail_queued_before_a_crash_goes_out_after_the_restart(
    identity_factory: Harness,
) -> None:
    """The server acknowledged a registration but could not send its mail (SMTP down) and
    was then killed (SIGKILL, no shutdown): the next server on the same database sends it."""
    port = free_port()  # nothing listens here yet
    first = identity_factory.server(**smtp_env(port))
    register(first.url, requests.Session(), "fay@example.org")
    wait_for(lambda: "mail delivery failed" in first.log(), what="the failed delivery log")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    identity_factory.servers.remove(first)  # killed on purpose: no graceful exit to check

    inbox = Inbox()
    controller = smtp_server(port, inbox)
    try:
        second = identity_factory.server(first.instance, **smtp_env(port))
        _, _, message = inbox.wait_for("fay@example.org", timeout=30)
    finally:
        controller.stop()
    assert message["Subject"] == "Verify your email address"
    assert link_in(message).startswith("/verify-email/")
    # The very message the first server queued, sent by the second.
    assert first.url + link_in(message) in message.get_content()
    # The worker logs "mail sent" once the SMTP exchange is over, which can be a moment
    # after the inbox has the message.
    wait_for(lambda: "mail sent" in second.log(), what="the second server's delivery log")
