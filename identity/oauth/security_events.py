"""Delivering Security Event Tokens to clients (RFC 8417, pushed as RFC 8935 says).

When an account is erased, ``identity.privacy.erasure`` queues one row per client the
person had consented to, or held a grant at, that registered a ``security_event_uri``:
the RISC ``account-purged`` event. Each serving worker sweeps the queue like back-channel
logouts (``identity.deliveries``): a fresh token signed like the client's ID tokens, POSTed
as ``application/secevent+jwt``; a 2xx answer (RFC 8935 asks for 202) ends the row.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from identity import deliveries
from identity.deliveries import OK_STATUSES
from identity.models.oauth import Client
from identity.models.privacy import SecurityEvent
from identity.oauth.clients.fetch import FetchError, post
from identity.oauth.tokens import TokenService

log = logging.getLogger("identity.security_events")
CONTENT_TYPE = "application/secevent+jwt"


class SecurityEventSender:
    def __init__(self, tokens: TokenService, *, allow_private: bool = False) -> None:
        self.tokens = tokens
        self.allow_private = allow_private

    def deliver_due(self, session: Session, now: datetime | None = None, limit: int = 20) -> int:
        """Try what is due and not leased; returns how many were tried."""
        due = deliveries.due(session, SecurityEvent, now, limit)
        return sum(self.deliver_one(session, row_id, now) for row_id in due)

    def deliver_one(self, session: Session, row_id: uuid.UUID, now: datetime | None = None) -> bool:
        if not deliveries.lease(session, SecurityEvent, row_id, now):
            session.commit()
            return False
        row = session.get(SecurityEvent, row_id)
        client = session.get(Client, row.client_pk) if row is not None else None
        uri = client.meta.get("security_event_uri") if client is not None else None
        if row is None or client is None or not uri:
            deliveries.done(session, SecurityEvent, row_id)
            return True
        alg = client.meta.get("id_token_signed_response_alg", "RS256")
        token = self.tokens.security_event_token(
            session, client.client_id, alg, row.event, row.subject
        )
        attempts, client_id = row.attempts, client.client_id
        session.commit()
        try:
            status = post(uri, token, CONTENT_TYPE, allow_private=self.allow_private)
            error = None if status in OK_STATUSES else f"answered HTTP {status}"
        except FetchError as failure:
            error = str(failure.message)[:200]
        extra = {"client_id": client_id}
        if error is None:
            deliveries.done(session, SecurityEvent, row_id)
            log.info("security event delivered", extra={"event": "secevent.delivered", **extra})
        elif deliveries.failed(session, SecurityEvent, row_id, attempts, error, now=now):
            log.warning(
                "security event given up",
                extra={"event": "secevent.given_up", "error": error, **extra},
            )
        else:
            log.info(
                "security event failed, will retry",
                extra={"event": "secevent.retry", "error": error, **extra},
            )
        return True
