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
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from identity.deliveries import RETRIES, SWEEP_INTERVAL
from identity.models.oauth import BackchannelLogout, Client
from identity.oauth.notices import ClientNoticeSender

__all__ = ["RETRIES", "SWEEP_INTERVAL", "BackchannelSender"]


class BackchannelSender(ClientNoticeSender):
    model = BackchannelLogout
    uri_key = "backchannel_logout_uri"
    event = "backchannel"
    noun = "back-channel logout"
    log = logging.getLogger("identity.backchannel")

    def request(self, session: Session, row: Any, client: Client, alg: str) -> tuple[str, str]:
        token = self.tokens.logout_token(session, client.client_id, alg, str(row.user_id), row.sid)
        return urlencode({"logout_token": token}), "application/x-www-form-urlencoded"
