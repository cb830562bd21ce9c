"""Signed notices POSTed to a client's endpoint from a durable queue: what the back-channel
logout sender and the security event sender share (identity.deliveries holds the leasing
and retries). A sender names its table, the client metadata holding the URL, and how it
makes the request for a row; this class leases the row, calls the client with no
transaction open, and deletes the row or schedules the retry.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from identity import deliveries
from identity.deliveries import OK_STATUSES
from identity.models.oauth import Client
from identity.oauth.clients.fetch import FetchError, post
from identity.oauth.tokens import TokenService


class ClientNoticeSender:
    model: ClassVar[Any]  # the queue's table
    uri_key: ClassVar[str]  # the client metadata naming where to POST
    event: ClassVar[str]  # the log events' prefix
    noun: ClassVar[str]  # what the log lines call a notice
    log: ClassVar[logging.Logger]

    def __init__(self, tokens: TokenService, *, allow_private: bool = False) -> None:
        self.tokens = tokens
        self.allow_private = allow_private

    def request(self, session: Session, row: Any, client: Client, alg: str) -> tuple[str, str]:
        """The body and content type to POST for ``row`` (a fresh signed token)."""
        raise NotImplementedError

    def deliver_due(self, session: Session, now: datetime | None = None, limit: int = 20) -> int:
        """Try what is due and not leased; returns how many were tried."""
        due = deliveries.due(session, self.model, now, limit)
        return sum(self.deliver_one(session, row_id, now) for row_id in due)

    def deliver_one(self, session: Session, row_id: uuid.UUID, now: datetime | None = None) -> bool:
        """Lease one row, deliver it, then delete it or schedule the retry. No transaction
        is open while the client is called."""
        if not deliveries.lease(session, self.model, row_id, now):
            session.commit()
            return False
        row = session.get(self.model, row_id)
        client = session.get(Client, row.client_pk) if row is not None else None
        uri = client.meta.get(self.uri_key) if client is not None else None
        if row is None or client is None or not uri:
            deliveries.done(session, self.model, row_id)
            return True
        alg = client.meta.get("id_token_signed_response_alg", "RS256")
        body, content_type = self.request(session, row, client, alg)
        attempts, client_id = row.attempts, client.client_id
        session.commit()
        try:
            status = post(uri, body, content_type, allow_private=self.allow_private)
            error = None if status in OK_STATUSES else f"answered HTTP {status}"
        except FetchError as failure:
            error = str(failure.message)[:200]
        extra = {"client_id": client_id}
        if error is None:
            deliveries.done(session, self.model, row_id)
            self.log.info(
                "%s delivered", self.noun, extra={"event": f"{self.event}.delivered", **extra}
            )
        elif deliveries.failed(session, self.model, row_id, attempts, error, now=now):
            self.log.warning(
                "%s given up",
                self.noun,
                extra={"event": f"{self.event}.given_up", "error": error, **extra},
            )
        else:
            self.log.info(
                "%s failed, will retry",
                self.noun,
                extra={"event": f"{self.event}.retry", "error": error, **extra},
            )
        return True
