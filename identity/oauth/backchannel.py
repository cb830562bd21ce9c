"""Delivering back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0).

When a login session ends (sign-out, signing out another browser, signing out everywhere, a
password change, disabling), ``identity.revocation`` queues a row per client that took part
and registered a ``backchannel_logout_uri``. Each serving worker sweeps the queue: it leases
a row, makes a fresh logout token, POSTs it (``logout_token=...``) under the SSRF rules of
``clients.fetch``, and deletes the row on a 2xx answer. Otherwise the row is retried later,
with growing waits, and given up after the last one (logged). Like the mail outbox, rows
survive restarts and a row leased by a worker that died is taken again when its lease ends.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from identity import deliveries
from identity.deliveries import OK_STATUSES, RETRIES, SWEEP_INTERVAL
from identity.models.oauth import BackchannelLogout, Client
from identity.oauth.clients.fetch import FetchError, post_form
from identity.oauth.tokens import TokenService

__all__ = ["RETRIES", "SWEEP_INTERVAL", "BackchannelSender"]

log = logging.getLogger("identity.backchannel")


class BackchannelSender:
    def __init__(self, tokens: TokenService, *, allow_private: bool = False) -> None:
        self.tokens = tokens
        self.allow_private = allow_private

    def deliver_due(self, session: Session, now: datetime | None = None, limit: int = 20) -> int:
        """Try what is due and not leased; returns how many were tried."""
        due = deliveries.due(session, BackchannelLogout, now, limit)
        return sum(self.deliver_one(session, row_id, now) for row_id in due)

    def deliver_one(self, session: Session, row_id: uuid.UUID, now: datetime | None = None) -> bool:
        """Lease one row, deliver it, then delete it or schedule the retry. No transaction
        is open while the client is called."""
        if not deliveries.lease(session, BackchannelLogout, row_id, now):
            session.commit()
            return False
        row = session.get(BackchannelLogout, row_id)
        client = session.get(Client, row.client_pk) if row is not None else None
        uri = client.meta.get("backchannel_logout_uri") if client is not None else None
        if row is None or client is None or not uri:
            deliveries.done(session, BackchannelLogout, row_id)
            return True
        token = self.tokens.logout_token(
            session,
            client.client_id,
            client.meta.get("id_token_signed_response_alg", "RS256"),
            str(row.user_id),
            row.sid,
        )
        attempts, client_id = row.attempts, client.client_id
        session.commit()
        try:
            status = post_form(uri, {"logout_token": token}, allow_private=self.allow_private)
            error = None if status in OK_STATUSES else f"answered HTTP {status}"
        except FetchError as failure:
            error = str(failure.message)[:200]
        extra = {"client_id": client_id}
        if error is None:
            deliveries.done(session, BackchannelLogout, row_id)
            log.info(
                "back-channel logout delivered", extra={"event": "backchannel.delivered", **extra}
            )
        elif deliveries.failed(session, BackchannelLogout, row_id, attempts, error, now=now):
            log.warning(
                "back-channel logout given up",
                extra={"event": "backchannel.given_up", "error": error, **extra},
            )
        else:
            log.info(
                "back-channel logout failed, will retry",
                extra={"event": "backchannel.retry", "error": error, **extra},
            )
        return True
