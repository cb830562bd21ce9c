"""Authlib endpoints: introspection (RFC 7662), revocation (RFC 7009), device
authorization (RFC 8628 section 3.1)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import UnauthorizedClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceAuthorizationEndpoint
from sqlalchemy.orm import Session

from identity import revocation
from identity.extensions import db, lazy_session
from identity.models.base import utcnow
from identity.models.oauth import Client, DeviceAuthorization, RefreshToken
from identity.oauth import tokens as token_store
from identity.oauth.clients.metadata import AUTH_METHODS, DEVICE_CODE
from identity.random_tokens import token_hash
from identity.runtime import runtime

AUTHENTICATED_METHODS = [m for m in AUTH_METHODS if m != "none"]
JWS_DOTS = 2  # header.payload.signature: what an access token looks like
MAX_TOKEN_LENGTH = 200  # longer than any refresh token this server makes
USER_CODE_LETTERS = 8  # shown as XXXX-XXXX


@dataclass
class TokenInfo:
    """Either kind of token, as introspection and revocation see it."""

    kind: str  # "access_token" or "refresh_token"
    client_id: str
    claims: dict[str, Any] | None = None
    refresh: RefreshToken | None = None

    def check_client(self, client: Any) -> bool:
        return self.client_id == client.client_id

    def is_expired(self) -> bool:
        if self.refresh is not None:
            now = utcnow()
            return self.refresh.expires_at <= now or self.refresh.family_expires_at <= now
        return False  # verify_access_token already refused expired access tokens

    def is_revoked(self) -> bool:
        if self.refresh is not None:
            return self.refresh.revoked_at is not None or self.refresh.rotated_at is not None
        return False


def find_token(session: Session, value: str, hint: str | None) -> TokenInfo | None:
    """Look the token up as the hint says first, then as the other kind (RFC 7009 2.1)."""
    if not isinstance(value, str) or not value or len(value) > token_store.MAX_JWT_LENGTH:
        return None
    order = (
        ("refresh_token", "access_token")
        if hint == "refresh_token"
        else ("access_token", "refresh_token")
    )
    rt = runtime()
    for kind in order:
        if kind == "access_token" and value.count(".") == JWS_DOTS:
            claims = rt.tokens.verify_access_token(session, value)
            if claims is not None:
                return TokenInfo("access_token", str(claims["client_id"]), claims=claims)
        elif kind == "refresh_token" and "." not in value and len(value) <= MAX_TOKEN_LENGTH:
            row = session.get(RefreshToken, token_hash(value))
            if row is not None:
                return TokenInfo("refresh_token", _client_id(session, row), refresh=row)
    return None


def _client_id(session: Session, row: RefreshToken) -> str:
    client = session.get(Client, row.client_pk)
    return client.client_id if client is not None else ""


class IntrospectionEndpoint(_IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTHENTICATED_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenInfo | None:
        # An access token is checked through one autocommit read (identity.database), so
        # introspecting one mostly needs no ORM session.
        return find_token(lazy_session(), token_string, token_type_hint)

    def check_permission(self, token: TokenInfo, client: Any, request: Any) -> bool:
        """A client sees its own tokens; a resource server sees any (AUTHZ-14)."""
        return bool(client.resource_server or token.client_id == client.client_id)

    def introspect_token(self, token: TokenInfo) -> dict[str, Any]:
        if token.claims is not None:
            claims = token.claims
            body = {
                "active": True,
                "token_type": "Bearer",  # RFC 6750's name, not a secret  # nosec B105
                "scope": claims.get("scope", ""),
                "client_id": claims["client_id"],
                "sub": claims.get("sub"),
                "aud": claims.get("aud"),
                "iss": claims.get("iss"),
                "exp": claims.get("exp"),
                "iat": claims.get("iat"),
                "jti": claims.get("jti"),
            }
            for optional in ("auth_time", "acr", "amr", "sid", "roles"):
                if optional in claims:
                    body[optional] = claims[optional]
            return body
        row = token.refresh
        assert row is not None
        return {
            "active": True,
            "token_type": "refresh_token",  # a token type hint  # nosec B105
            "scope": row.scope,
            "client_id": token.client_id,
            "sub": str(row.user_id),
            "iss": runtime().settings.issuer,
            "exp": int(min(row.expires_at, row.family_expires_at).timestamp()),
            "iat": int(row.issued_at.timestamp()),
        }


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenInfo | None:
        # An access token is checked through one autocommit read (identity.database), so
        # introspecting one mostly needs no ORM session.
        return find_token(lazy_session(), token_string, token_type_hint)

    def revoke_token(self, token: TokenInfo, request: Any) -> None:
        lifetime = runtime().settings.access_token_lifetime
        if token.refresh is not None:
            # Revoking a refresh token ends its grant, access tokens included (TOK-15).
            revocation.revoke_family(db.session(), token.refresh.family_id, lifetime)
        elif token.claims is not None:
            revocation.remember_revocation(db.session(), f"jti:{token.claims['jti']}", lifetime)


class DeviceAuthorizationEndpoint(_DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)
    ENDPOINT_NAME = "device_authorization"

    def create_endpoint_response(
        self, request: Any
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE):
            raise UnauthorizedClientError("The client may not use the device grant.")
        settings = runtime().settings
        self.EXPIRES_IN = settings.device_code_lifetime
        self.INTERVAL = settings.device_code_interval
        scope = client.get_allowed_scope(request.payload.scope)
        device_code = self.generate_device_code()
        user_code = self.generate_user_code()
        uri = self.get_verification_uri()
        now = utcnow()
        db.session.add(
            DeviceAuthorization(
                device_code_hash=token_hash(device_code),
                user_code_hash=user_code_digest(user_code),
                client_pk=client.pk,
                scope=scope,
                created_at=now,
                expires_at=now + timedelta(seconds=self.EXPIRES_IN),
            )
        )
        body = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={user_code}",
            "expires_in": self.EXPIRES_IN,
            "interval": self.INTERVAL,
        }
        return 200, body, default_json_headers

    def get_verification_uri(self) -> str:
        return f"{runtime().settings.issuer}/device"


def normalize_user_code(raw: str) -> str:
    """Users may type the code in any case, with or without the dash (RFC 8628 6.1)."""
    letters = "".join(ch for ch in (raw or "").upper() if ch.isalnum())[:16]
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == USER_CODE_LETTERS else letters


def user_code_digest(user_code: str) -> str:
    key = runtime().secret_key.encode()
    return hmac.new(key, normalize_user_code(user_code).encode(), "sha256").hexdigest()
