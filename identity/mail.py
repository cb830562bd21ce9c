"""Outgoing mail: SMTP in production, a file or console outbox in development.

A message is queued in the ``mail_outbox`` table inside the transaction of the change that
causes it, so it goes out only if that change commits, and once committed it is not lost
(a crash, a restart, an SMTP server that is down). When the transaction commits, a
background thread of this process sends it, in commit order; a request therefore takes the
same time whether or not it sends mail, which keeps sign-up and reset from revealing which
addresses have accounts (AUTH-12), and a slow SMTP server stays out of the request path.
Every serving worker also sweeps the outbox every few seconds for what is due: retries of
failed sends (growing delays, then the message is dropped with an error in the log) and
messages left behind by a process that died. A sender leases a row before sending, so
several workers and instances never send the same row at the same time.

Delivery is at least once: a process that dies after the mail server took a message but
before the row was deleted sends it again when the lease lapses. Messages are sealed
(``identity.sealing``) in the table and never logged: they hold links that act as
passwords.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import queue
import smtplib
import ssl
import stat
import threading
import time
import traceback
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.orm import Session, scoped_session

from identity.database import rowcount
from identity.extensions import db
from identity.models.base import new_uuid, utcnow
from identity.models.mail import OutboundMail
from identity.models.privacy import SentMail
from identity.paths import templates_dir
from identity.sealing import Sealer
from identity.settings import Settings

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("identity.mail")

# Seconds before each retry of a failed send; after the last one the message is dropped.
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0)
# How long a sender owns a row; longer than any SMTP exchange (see smtp_timeout).
LEASE = timedelta(minutes=5)
SWEEP_INTERVAL = 5.0
OUTBOX_MODE = 0o700  # the outbox folder: its owner only
_QUEUED = "identity.mail.queued"  # key in Session.info: ids waiting for the commit


def _context(mail_id: uuid.UUID, user_id: uuid.UUID | None) -> bytes:
    # Sealed together with its row's identity: a message moved to another row (or to no
    # user, to outlive an erasure) does not open.
    return f"{mail_id}:{user_id or ''}".encode()


class Mailer:
    def __init__(self, settings: Settings, secret_key: str) -> None:
        self.settings = settings
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        self._sealer = Sealer(secret_key, info=b"identity mail outbox v1", aad=b"mail")
        # Ids of committed rows for the sender thread. One thread, so that a worker sends
        # in commit order (a newer reset link must not arrive before the older one it
        # replaced). A daemon: at exit a send in progress is abandoned, not waited for (an
        # SMTP server that hangs must not hold up a shutdown); its row stays, and another
        # worker sends it once the lease lapses.
        self._queue: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()
        self._unfinished = 0  # queued or being sent
        self._idle = threading.Condition()
        self._sender_started = False
        self._app: Flask | None = None
        self._templates: Environment | None = None

    def init_app(self, app: Flask) -> None:
        self._app = app

    # Queueing ------------------------------------------------------------------------

    def render(self, template: str, **context: Any) -> tuple[str, str]:
        """The subject and body of ``templates/emails/TEMPLATE``, rendered without Flask so
        that services and commands can."""
        if self._templates is None:
            self._templates = Environment(
                loader=FileSystemLoader(templates_dir() / "emails"),
                # As Flask does: HTML would be escaped; the .txt mails are not.
                autoescape=select_autoescape(("html", "htm", "xml")),
            )
        subject = self._templates.get_template(f"{template}.subject.txt").render(context)
        body = self._templates.get_template(f"{template}.txt").render(context)
        return subject.strip(), body

    def send_template(
        self,
        session: Session | scoped_session[Session],
        to: str,
        template: str,
        user_id: uuid.UUID | None = None,
        **context: Any,
    ) -> None:
        """Render ``template`` (see ``render``) and queue it like ``send``."""
        subject, body = self.render(template, **context)
        self.send(session, to, subject, body, user_id=user_id)

    def build(self, to: str, subject: str, body: str) -> EmailMessage:
        if any(ch in to + subject for ch in "\r\n"):
            raise ValueError("header injection")  # INPUT-07; addresses are validated earlier
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="identity.local")
        message.set_content(body)
        return message

    def send(
        self,
        session: Session | scoped_session[Session],
        to: str,
        subject: str,
        body: str,
        user_id: uuid.UUID | None = None,
    ) -> None:
        """Queue a message in ``session``'s transaction; it is sent after the commit."""
        mail_id = new_uuid()
        row = OutboundMail(
            id=mail_id,
            user_id=user_id,
            sealed=self._sealer.seal(
                bytes(self.build(to, subject, body)), _context(mail_id, user_id)
            ),
            next_attempt_at=utcnow(),
        )
        session.add(row)
        if user_id is not None:  # the person's record of mail sent (their data export)
            session.add(SentMail(user_id=user_id, subject=subject[:300]))
        real = session() if isinstance(session, scoped_session) else session
        if _QUEUED not in real.info:
            real.info[_QUEUED] = []
            event.listen(real, "after_commit", self._after_commit)
            event.listen(real, "after_soft_rollback", self._after_rollback)
        real.info[_QUEUED].append(mail_id)

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint was released; the rows are not visible before the commit
        queued, session.info[_QUEUED] = session.info.get(_QUEUED, []), []
        if not queued or self._app is None:
            return
        with self._idle:
            self._unfinished += len(queued)
            for mail_id in queued:
                self._queue.put(mail_id)
            if not self._sender_started:
                self._sender_started = True
                threading.Thread(target=self._sender, name="identity-mail", daemon=True).start()

    def _after_rollback(self, session: Session, previous_transaction: Any) -> None:
        if previous_transaction.nested:
            return  # a savepoint: rows queued before it are still part of the transaction
        session.info[_QUEUED] = []  # the rows are gone

    def _sender(self) -> None:

        assert self._app is not None
        while True:
            mail_id = self._queue.get()
            try:
                with self._app.app_context():
                    self.deliver_one(db.session(), mail_id)
            except Exception:
                # Nobody waits for this send: without a log line the failure would vanish.
                # The row stays; the sweep retries it once its lease lapses.
                log.exception("mail not sent", extra={"event": "mail.error"})
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the sends started by commits so far are done (tests)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._unfinished == 0, timeout):
                raise TimeoutError(f"mail still being sent after {timeout} s")

    # Sending -------------------------------------------------------------------------

    def deliver_due(self, session: Session, now: datetime | None = None, limit: int = 20) -> int:
        """Send what is due and not leased (the sweep); returns how many were tried.

        ``now`` is for tests; by default each message is leased and rescheduled at the
        time it is sent, not at the start of the batch (a slow SMTP server would otherwise
        see leases that lapsed before they were taken)."""
        moment = now or utcnow()
        due = (
            session.execute(
                select(OutboundMail.id)
                .where(
                    OutboundMail.next_attempt_at <= moment,
                    or_(OutboundMail.claimed_until.is_(None), OutboundMail.claimed_until < moment),
                )
                .order_by(OutboundMail.next_attempt_at)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        session.rollback()
        return sum(self.deliver_one(session, mail_id, now) for mail_id in due)

    def deliver_one(
        self, session: Session, mail_id: uuid.UUID, now: datetime | None = None
    ) -> bool:
        """Lease one due row, send it, and delete it (or schedule its retry). False when
        the row is gone, not due, or leased by another sender.

        No transaction is open while the mail server is talked to: on SQLite an open
        transaction holds the database's write lock, on PostgreSQL a connection."""
        moment = now or utcnow()
        claimed = rowcount(
            session.execute(
                update(OutboundMail)
                .where(
                    OutboundMail.id == mail_id,
                    OutboundMail.next_attempt_at <= moment,
                    or_(OutboundMail.claimed_until.is_(None), OutboundMail.claimed_until < moment),
                )
                .values(claimed_until=moment + LEASE)
            )
        )
        found = None
        if claimed == 1:
            found = session.execute(
                select(OutboundMail.sealed, OutboundMail.user_id, OutboundMail.attempts).where(
                    OutboundMail.id == mail_id
                )
            ).one_or_none()
        session.commit()
        if found is None:
            return False
        sealed, user_id, attempts = found
        try:
            message = email.message_from_bytes(
                self._sealer.open(sealed, _context(mail_id, user_id)), policy=email.policy.default
            )
            self.deliver(message)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - every failure counts towards the retries
            self._failed(session, mail_id, attempts + 1, now, exc)
            return True
        session.execute(delete(OutboundMail).where(OutboundMail.id == mail_id))
        session.commit()
        log.info("mail sent", extra={"event": "mail.sent", "subject": message["Subject"]})
        return True

    def _failed(
        self,
        session: Session,
        mail_id: uuid.UUID,
        attempts: int,
        now: datetime | None,
        exc: Exception,
    ) -> None:
        details = {"attempt": attempts, "error": type(exc).__name__, "mail_id": str(mail_id)}
        expected = isinstance(exc, (OSError, smtplib.SMTPException))  # the server, not us
        if attempts > len(self.retry_delays):
            session.execute(delete(OutboundMail).where(OutboundMail.id == mail_id))
            session.commit()
            log.error("mail dropped after retries", extra={"event": "mail.dropped", **details})
            return
        retry_at = (now or utcnow()) + timedelta(seconds=self.retry_delays[attempts - 1])
        session.execute(
            update(OutboundMail)
            .where(OutboundMail.id == mail_id)
            .values(attempts=attempts, next_attempt_at=retry_at, claimed_until=None)
        )
        session.commit()
        if expected:
            log.warning("mail delivery failed", extra={"event": "mail.failed", **details})
            return
        # A bug, or a message that cannot be opened: worth a look. Where it happened, but
        # not the exception's text, which may quote the message or the SMTP password.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
        log.error("mail delivery failed", extra={"event": "mail.failed", "where": where, **details})

    def deliver(self, message: EmailMessage) -> None:
        backend = self.settings.mail_backend
        if backend == "smtp":
            self._deliver_smtp(message)
        elif backend == "file":
            write_outbox_file(self.settings.instance_path / "outbox", bytes(message))
        else:
            log.info(
                "mail (console backend)",
                extra={"event": "mail.console", "mail": message.as_string()},
            )

    def _deliver_smtp(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        with smtp:
            if s.smtp_security == "starttls":
                smtp.starttls(context=context)
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)


def write_outbox_file(outbox: Path, data: bytes) -> Path:
    """One message as a file only its owner may read: messages hold live reset and
    verification links, so the folder is 0700 and each file 0600 whatever the umask."""
    outbox.mkdir(mode=OUTBOX_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(outbox.stat().st_mode) != OUTBOX_MODE:
        outbox.chmod(OUTBOX_MODE)  # a folder made by an earlier version, or by hand
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    # Written aside, then renamed: whoever watches the outbox never reads half a file.
    partial = outbox / f".{name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(partial, outbox / name)
    return outbox / name
