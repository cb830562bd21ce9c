"""Delivering Security Event Tokens to clients (RFC 8417, pushed as RFC 8935 says).

When an account is erased, ``identity.privacy.erasure`` queues one row per client the
person had consented to, or held a grant at, that registered a ``security_event_uri``:
the RISC ``account-purged`` event. Each serving worker sweeps the queue like back-channel
logouts (``identity.oauth.notices``): a fresh token signed like the client's ID tokens, POSTed
as ``application/secevent+jwt``; a 2xx answer (RFC 8935 asks for 202) ends the row.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from identity.models.oauth import Client
from identity.models.privacy import SecurityEvent
from identity.oauth.notices import ClientNoticeSender

CONTENT_TYPE = "application/secevent+jwt"


class SecurityEventSender(ClientNoticeSender):
    model = SecurityEvent
    uri_key = "security_event_uri"
    event = "secevent"
    noun = "security event"
    log = logging.getLogger("identity.security_events")

    def request(self, session: Session, row: Any, client: Client, alg: str) -> tuple[str, str]:
        token = self.tokens.security_event_token(
            session, client.client_id, alg, row.event, row.subject
        )
        return token, CONTENT_TYPE
