"""Outgoing mail: SMTP in production, a file or console outbox in development.

Messages are handed to a small background pool so a request takes the same time whether or
not it sends mail; that keeps sign-up and reset from revealing which addresses have accounts
(AUTH-12) and keeps a slow SMTP server out of the request path. A failed send is retried a
few times, then logged (never with the message body, which may hold a link).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from identity.settings import Settings

log = logging.getLogger("identity.mail")

RETRY_DELAYS = (1.0, 5.0, 15.0)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mail")
        self._pending: list[Future[None]] = []
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS

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

    def send(self, to: str, subject: str, body: str) -> None:
        message = self.build(to, subject, body)
        future = self._pool.submit(self._deliver_with_retries, message)
        self._pending = [f for f in self._pending if not f.done()] + [future]

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for queued messages (tests, and graceful shutdown)."""
        for future in list(self._pending):
            future.result(timeout=timeout)
        self._pending = []

    def _deliver_with_retries(self, message: EmailMessage) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays)):
            time.sleep(delay)
            try:
                self.deliver(message)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning(
                    "mail delivery failed",
                    extra={
                        "event": "mail.failed",
                        "attempt": attempt + 1,
                        "error": type(exc).__name__,
                    },
                )
                continue
            except Exception:
                # Nobody waits on this future: without a log line the message would vanish.
                log.exception("mail not sent", extra={"event": "mail.error"})
                return
            log.info("mail sent", extra={"event": "mail.sent", "subject": message["Subject"]})
            return
        log.error("mail dropped after retries", extra={"event": "mail.dropped"})

    def deliver(self, message: EmailMessage) -> None:
        backend = self.settings.mail_backend
        if backend == "smtp":
            self._deliver_smtp(message)
        elif backend == "file":
            outbox = self.settings.instance_path / "outbox"
            outbox.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
            # Written aside, then renamed: whoever watches the outbox never reads half a file.
            partial = outbox / f".{name}.partial"
            partial.write_bytes(bytes(message))
            os.replace(partial, outbox / name)
        else:
            log.info(
                "mail (console backend)",
                extra={"event": "mail.console", "message": message.as_string()},
            )

    def _deliver_smtp(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        smtp_class = smtplib.SMTP_SSL if s.smtp_security == "tls" else smtplib.SMTP
        kwargs = {"context": context} if s.smtp_security == "tls" else {}
        with smtp_class(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, **kwargs) as smtp:
            if s.smtp_security == "starttls":
                smtp.starttls(context=context)
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)
