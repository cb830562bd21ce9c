"""The mail outbox: mail goes out only when its change commits, and is not lost after that
(REL-01: nothing acknowledged is lost), sealed at rest, retried, leased between senders."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from identity.extensions import db
from identity.mail import LEASE
from identity.models.base import utcnow
from identity.models.mail import OutboundMail
from identity.models.user import User
from tests.conftest import PASSWORD, form_post


def outbox_rows(app) -> list[OutboundMail]:
    with app.app_context():
        rows = db.session.execute(select(OutboundMail)).scalars().all()
        db.session.expunge_all()
        return list(rows)


def mailer(app):
    return app.extensions["identity"].mailer


def queue(app, to: str = "ann@example.org", user_id=None) -> None:
    with app.app_context():
        mailer(app).send(db.session, to, "Hello", "https://example.org/secret-link", user_id)
        db.session.commit()


class FlakyServer:
    """A mail server that refuses the first ``failures`` messages, then takes the rest."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[EmailMessage] = []

    def __call__(self, message: EmailMessage) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("SMTP down")
        self.sent.append(message)


def test_REL_01_mail_is_sent_after_commit_and_the_row_deleted(app, client, mailbox):
    form_post(client, "/register", {"email": "ann@example.org", "password": PASSWORD})
    assert [m["Subject"] for m in mailbox.to("ann@example.org")] == ["Verify your email address"]
    assert outbox_rows(app) == []


def test_REL_01_no_mail_when_the_change_rolls_back(app, mailbox):
    with app.app_context():
        mailer(app).send(db.session, "ann@example.org", "Hello", "body")
        db.session.rollback()
        db.session.commit()  # a later commit of the same session sends nothing either
    assert mailbox.messages == []
    assert outbox_rows(app) == []


def test_REL_01_a_failed_send_stays_queued_and_is_retried(app, caplog):
    server = FlakyServer(failures=1)
    mailer(app).deliver = server
    caplog.set_level(logging.WARNING, logger="identity.mail")
    queue(app)
    mailer(app).flush()
    [row] = outbox_rows(app)
    assert row.attempts == 1 and row.claimed_until is None
    assert row.next_attempt_at > utcnow()
    assert "mail delivery failed" in caplog.text
    with app.app_context():
        assert mailer(app).deliver_due(db.session()) == 0  # not due yet
        later = row.next_attempt_at + timedelta(seconds=1)
        assert mailer(app).deliver_due(db.session(), now=later) == 1
    assert [m["To"] for m in server.sent] == ["ann@example.org"]
    assert outbox_rows(app) == []


def test_REL_01_mail_is_dropped_with_an_error_after_the_last_retry(app, caplog):
    mailer(app).deliver = FlakyServer(failures=100)
    mailer(app).retry_delays = (1.0, 1.0)
    caplog.set_level(logging.WARNING, logger="identity.mail")
    queue(app)
    mailer(app).flush()
    with app.app_context():
        now = utcnow()
        for step in (2, 4):
            mailer(app).deliver_due(db.session(), now=now + timedelta(seconds=step))
    assert outbox_rows(app) == []
    dropped = [r for r in caplog.records if r.getMessage() == "mail dropped after retries"]
    assert len(dropped) == 1 and dropped[0].levelno == logging.ERROR
    assert dropped[0].attempt == 3


def test_REL_01_a_leased_row_waits_until_its_sender_is_presumed_dead(app):
    """A row another process leased is left alone, and sent once its lease lapsed (that
    process died mid-send)."""
    server = FlakyServer(failures=0)
    mailer(app).deliver = server
    with app.app_context():
        mailer(app).send(db.session, "ann@example.org", "Hello", "body")
        db.session.flush()
        row = db.session.execute(select(OutboundMail)).scalar_one()
        row.claimed_until = utcnow() + LEASE  # as another sender would have
        # Committed without the after-commit send: as if this process died at once.
        db.session.info["identity.mail.queued"] = []
        db.session.commit()
        assert mailer(app).deliver_due(db.session()) == 0
        assert server.sent == []
        later = utcnow() + LEASE + timedelta(seconds=1)
        assert mailer(app).deliver_due(db.session(), now=later) == 1
    assert len(server.sent) == 1
    assert outbox_rows(app) == []


def test_REL_12_queued_mail_is_sealed_at_rest(app, client):
    """The outbox holds verification and reset links: neither they nor the recipient are
    readable from a database dump."""
    mailer(app).deliver = FlakyServer(failures=1)
    form_post(client, "/register", {"email": "ann@example.org", "password": PASSWORD})
    mailer(app).flush()
    [row] = outbox_rows(app)
    assert row.sealed.startswith("v1.")
    for clear in ("ann@example.org", "verify-email", "Verify your email", "http://"):
        assert clear not in row.sealed


def test_REL_12_mail_sealed_under_another_secret_is_not_sent(app_factory):
    """A row that cannot be opened (IDENTITY_SECRET_KEY replaced) counts as a failed send."""
    first = app_factory(secret_key="a" * 40)
    second = app_factory(secret_key="b" * 40)
    mailer(first).deliver = FlakyServer(failures=1)  # keeps the row queued
    queue(first)
    mailer(first).flush()
    server = FlakyServer(failures=0)
    mailer(second).deliver = server
    [row] = outbox_rows(second)
    with second.app_context():
        later = row.next_attempt_at + timedelta(seconds=1)
        assert mailer(second).deliver_due(db.session(), now=later) == 1
    assert server.sent == []
    [row] = outbox_rows(second)
    assert row.attempts == 2


def test_GDPR_queued_mail_goes_with_its_user(app):
    mailer(app).deliver = FlakyServer(failures=1)
    with app.app_context():
        user = User(email="ann@example.org", password_hash="x")
        db.session.add(user)
        db.session.commit()
        user_id = user.id
    queue(app, user_id=user_id)
    mailer(app).flush()
    assert len(outbox_rows(app)) == 1
    with app.app_context():
        db.session.execute(delete(User).where(User.id == user_id))
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(OutboundMail)) == 0


@pytest.mark.parametrize("header", ["To", "Subject"])
def test_INPUT_07_header_injection_is_refused_before_queueing(app, header):
    with app.app_context(), pytest.raises(ValueError):
        to, subject = "ann@example.org", "Hello"
        if header == "To":
            to += "\r\nBcc: eve@example.org"
        else:
            subject += "\r\nBcc: eve@example.org"
        mailer(app).send(db.session, to, subject, "body")
    assert outbox_rows(app) == []


def test_REL_01_no_transaction_is_open_while_the_mail_server_is_talked_to(app):
    """Sending may take seconds (a slow or unreachable SMTP server): meanwhile other
    requests must be able to write (SQLite's write lock is held by any open transaction)."""
    written = []

    def slow_server(message: EmailMessage) -> None:
        with app.app_context():  # another request, in the middle of the send
            db.session.add(User(email=f"writer{len(written)}@example.org", password_hash="x"))
            db.session.commit()
            written.append(message["To"])

    mailer(app).deliver = slow_server
    queue(app)
    mailer(app).flush()
    assert written == ["ann@example.org"]
    assert outbox_rows(app) == []


def test_REL_01_mail_queued_in_a_savepoint_waits_for_the_outer_commit(app, mailbox):
    with app.app_context():
        savepoint = db.session.begin_nested()
        mailer(app).send(db.session, "ann@example.org", "Hello", "body")
        savepoint.commit()
        mailer(app).flush()
        assert mailbox.messages == []  # released savepoint, outer transaction still open
        db.session.commit()
    assert [m["To"] for m in mailbox.messages] == ["ann@example.org"]


def test_REL_01_an_unexpected_error_counts_as_a_failed_attempt(app, caplog):
    """Not only SMTP errors: any failure is retried and, in the end, dropped; its log line
    says where it happened but not the exception's text (it may quote the message)."""

    def broken(message: EmailMessage) -> None:
        raise ValueError(f"cannot send {message.get_content()}")

    mailer(app).deliver = broken
    caplog.set_level(logging.WARNING, logger="identity.mail")
    queue(app)
    mailer(app).flush()
    [row] = outbox_rows(app)
    assert row.attempts == 1 and row.claimed_until is None
    [record] = [r for r in caplog.records if r.getMessage() == "mail delivery failed"]
    assert record.levelno == logging.ERROR and record.error == "ValueError"
    assert "test_mail_outbox.py" in record.where
    assert record.exc_info is None and "secret-link" not in caplog.text


def test_REL_12_a_sealed_message_moved_to_another_row_does_not_open(app, caplog):
    server = FlakyServer(failures=2)
    mailer(app).deliver = server
    queue(app, to="ann@example.org")
    queue(app, to="bob@example.org")
    mailer(app).flush()
    with app.app_context():
        rows = db.session.execute(select(OutboundMail)).scalars().all()
        rows[0].sealed, rows[1].sealed = rows[1].sealed, rows[0].sealed
        db.session.commit()
        later = utcnow() + timedelta(hours=1)
        assert mailer(app).deliver_due(db.session(), now=later) == 2
    assert server.sent == []
    assert {row.attempts for row in outbox_rows(app)} == {2}


HANGING_SEND = """
import sys, time
from tests.conftest import make_app
from identity.extensions import db

app = make_app(__import__("pathlib").Path(sys.argv[1]), sys.argv[2])
mailer = app.extensions["identity"].mailer
mailer.deliver = lambda message: time.sleep(120)  # an SMTP server that never answers
with app.app_context():
    db.create_all()
    mailer.send(db.session, "ann@example.org", "Hello", "body")
    db.session.commit()
time.sleep(0.5)  # the send is in progress
print("exiting", flush=True)
"""


def test_REL_a_hanging_mail_server_does_not_hold_up_an_exit(tmp_path):
    """A send in progress is abandoned at exit (its row stays for the next sweep), so a
    worker stops on time even when the mail server hangs."""
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", HANGING_SEND, str(tmp_path), f"sqlite:///{tmp_path}/db.sqlite"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert time.monotonic() - started < 30


def test_mail_goes_out_in_commit_order(app):
    """A newer reset link must not arrive before the older one it replaced: one worker
    sends in the order of the commits, however long each send takes."""
    sent: list[str] = []

    def uneven_server(message: EmailMessage) -> None:
        time.sleep(0.03 if int(message["Subject"].split()[-1]) % 2 == 0 else 0)
        sent.append(message["Subject"])

    mailer(app).deliver = uneven_server
    for n in range(6):
        with app.app_context():
            mailer(app).send(db.session, "ann@example.org", f"mail {n}", "body")
            db.session.commit()
    mailer(app).flush()
    assert sent == [f"mail {n}" for n in range(6)]


def test_console_backend_logs_the_message(app_factory, caplog):
    """IDENTITY_MAIL_BACKEND=console logs the whole message (development only); it failed
    every mail with a KeyError when the log record's reserved "message" key was used."""
    app = app_factory(mail_backend="console")
    message = EmailMessage()
    message["To"] = "alice@example.org"
    message["Subject"] = "Hello"
    message.set_content("body text")
    with caplog.at_level(logging.INFO, logger="identity.mail"):
        app.extensions["identity"].mailer.deliver(message)
    logged = [r for r in caplog.records if getattr(r, "event", None) == "mail.console"]
    assert len(logged) == 1
    assert "body text" in logged[0].mail


def test_mail_templates_render_without_flask(app):
    """Services and commands render mails without a request or app context: plain text,
    where a link's & stays as typed (nothing is HTML-escaped)."""
    subject, body = mailer(app).render(
        "verify_email", issuer="https://id.example.org", link="https://x.test/v?a=1&b=2"
    )
    assert subject
    assert "https://x.test/v?a=1&b=2" in body  # no &amp;
    assert "https://id.example.org" in body
