"""The device authorization grant (RFC 8628) at the token endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidGrantError
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    ExpiredTokenError,
    SlowDownError,
)
from authlib.oauth2.rfc8628 import DeviceCodeGrant as _DeviceCodeGrant
from sqlalchemy import update

from identity.database import rowcount
from identity.extensions import db
from identity.models.base import utcnow
from identity.models.oauth import DeviceAuthorization
from identity.models.user import User
from identity.oauth.clients.metadata import AUTH_METHODS
from identity.oauth.token.grants import IssuesTokens, active_user
from identity.oauth.tokens import GrantContext
from identity.random_tokens import token_hash
from identity.runtime import runtime

MAX_DEVICE_CODE_LENGTH = 200  # longer than any device code this server makes


@dataclass
class DeviceCredential:
    row: DeviceAuthorization

    def get_client_id(self) -> str:
        return self.row.client.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()


class DeviceCodeGrant(IssuesTokens, _DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        if not isinstance(device_code, str) or len(device_code) > MAX_DEVICE_CODE_LENGTH:
            return None
        row = db.session.get(DeviceAuthorization, token_hash(device_code))
        return DeviceCredential(row) if row is not None else None

    def validate_device_credential(self, credential: DeviceCredential) -> User:
        """RFC 8628 section 3.5, with single use enforced by a conditional UPDATE."""
        row = credential.row
        now = utcnow()
        if credential.is_expired():
            raise ExpiredTokenError()
        if row.status == "denied":
            raise AccessDeniedError()
        if row.status == "used":
            raise InvalidGrantError("The device code was already used.")
        if row.status == "approved":
            claimed = rowcount(
                db.session.execute(
                    update(DeviceAuthorization)
                    .where(
                        DeviceAuthorization.device_code_hash == row.device_code_hash,
                        DeviceAuthorization.status == "approved",
                    )
                    .values(status="used")
                )
            )
            if claimed != 1 or row.user_id is None:
                raise InvalidGrantError("The device code was already used.")
            return active_user(row.user_id)
        interval = timedelta(seconds=runtime().settings.device_code_interval)
        too_fast = row.last_polled_at is not None and now - row.last_polled_at < interval
        row.last_polled_at = now
        if too_fast:
            raise SlowDownError()
        raise AuthorizationPendingError()

    def grant_context(self, user: User | None, scope: str) -> GrantContext:
        row: DeviceAuthorization = self.request.credential.row
        return self.stored_context(row, user, scope)
