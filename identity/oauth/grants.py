"""Authlib grants, overriding only storage and the checks Authlib leaves to us.

Codes and refresh tokens are claimed with one conditional UPDATE, so of any number of
concurrent redemptions exactly one wins (BCP-17, BCP-25); a replayed code or refresh token
revokes the whole token family (BCP-16, BCP-24).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from identity import audit
from identity.extensions import db
from identity.models.base import utcnow
from identity.models.oauth import AuthorizationCode, RefreshToken
from identity.models.user import User
from identity.oauth import tokens as token_store
from identity.oauth.metadata import AUTH_METHODS
from identity.oauth.tokens import GrantContext
from identity.runtime import runtime
from identity.sessions import policy as session_policy
from identity.sessions.service import alive_by_sid
from identity.tokens import token_hash

# Scopes that only make sense with a user; client_credentials tokens never carry them.
USER_SCOPES = {"openid", "profile", "email", "address", "phone", "offline_access"}


def active_user(user_id: uuid.UUID) -> User:
    """The user behind a grant; disabled or deleted users get nothing (SESS-04)."""
    # With their roles (the access token carries them) in one query, not two.
    user = db.session.get(User, user_id, options=[joinedload(User.roles)])
    if user is None or not user.is_active:
        raise InvalidGrantError("The user of this grant is no longer active.")
    return user


class IssuesTokens:
    """Routes Authlib's token generation to our TokenService with the grant's context."""

    ISSUES_ID_TOKEN = True
    request: Any

    def grant_context(self, user: User | None, scope: str) -> GrantContext:
        raise NotImplementedError

    def stored_context(self, row: Any, user: User | None, scope: str, **more: Any) -> GrantContext:
        """The context a stored grant (code, refresh token, device authorization) recorded
        of how the user signed in."""
        return GrantContext(
            client=self.request.client,
            scope=scope,
            user=user,
            auth_time=row.auth_time,
            amr=list(row.amr),
            acr=row.acr,
            **more,
        )

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        ctx = self.grant_context(user, scope or "")
        return runtime().tokens.issue(
            db.session,
            ctx,
            include_refresh_token=include_refresh_token,
            id_token=self.ISSUES_ID_TOKEN,
        )

    def save_token(self, token: dict[str, Any]) -> None:
        """Refresh tokens are stored while they are generated; nothing else is stored."""


# Authorization code -------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only (BCP-12), required from public clients (BCP-11) and, by
    default, from every client; verifier errors are ``invalid_grant`` (BCP-09, BCP-10)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        required = runtime().settings.require_pkce or grant.request.client.is_public
        if not data.get("code_challenge"):
            if required:
                raise InvalidRequestError("PKCE is required: send code_challenge with S256.")
            if data.get("code_challenge_method"):
                raise InvalidRequestError("Missing 'code_challenge'.")
            return
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        if len(data["code_challenge"]) != 43:
            # RFC 7636 4.2: BASE64URL(SHA256(verifier)) is 43 characters; no other length
            # can ever match (Authlib's pattern allows 43-128 for "plain").
            raise InvalidRequestError("Invalid 'code_challenge'.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        try:
            super().validate_code_verifier(grant, result)
        except InvalidRequestError as error:
            raise InvalidGrantError(error.description) from None


@dataclass
class CodeView:
    """What Authlib asks of an authorization code."""

    row: AuthorizationCode

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    @property
    def code_challenge(self) -> str | None:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.row.code_challenge_method


class AuthorizationCodeGrant(IssuesTokens, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def save_authorization_code(self, code: str, request: Any) -> None:
        settings = runtime().settings
        login = request.login_session
        data = request.payload.data
        now = utcnow()
        db.session.add(
            AuthorizationCode(
                code_hash=token_hash(code),
                client_pk=request.client.pk,
                user_id=request.user.id,
                redirect_uri=data.get("redirect_uri"),
                scope=request.scope or "",
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                claims=request.claims_request,
                auth_time=login.auth_time,
                amr=list(login.amr),
                acr=login.acr,
                sid=login.sid,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.authorization_code_lifetime),
            )
        )

    def query_authorization_code(self, code: str, client: Any) -> CodeView | None:
        if not isinstance(code, str) or len(code) > 200:
            return None
        row = db.session.get(AuthorizationCode, token_hash(code))
        if row is None or row.client_pk != client.pk:
            return None  # BCP-18: a code is bound to its client
        now = utcnow()
        claimed = db.session.execute(
            update(AuthorizationCode)
            .where(
                AuthorizationCode.code_hash == row.code_hash, AuthorizationCode.used_at.is_(None)
            )
            .values(used_at=now)
        ).rowcount
        if claimed != 1:
            # RFC 6749 section 4.1.2: a second use revokes what the first one issued.
            token_store.revoke_family(
                db.session, row.family_id, runtime().settings.access_token_lifetime
            )
            audit.record(
                db.session,
                "oauth.code_replayed",
                outcome="failure",
                subject_id=row.user_id,
                client_id=client.client_id,
            )
            return None
        if row.expires_at <= now:
            return None
        return CodeView(row)

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        """Codes are kept, marked used, so that a replay is recognised."""

    def authenticate_user(self, authorization_code: CodeView) -> User:
        return active_user(authorization_code.row.user_id)

    def grant_context(self, user: User | None, scope: str) -> GrantContext:
        row: AuthorizationCode = self.request.authorization_code.row
        return self.stored_context(
            row,
            user,
            scope,
            sid=row.sid,
            family_id=row.family_id,
            nonce=row.nonce,
            claims=row.claims,
        )


# Refresh token ------------------------------------------------------------------------


@dataclass
class RefreshTokenView:
    row: RefreshToken

    def check_client(self, client: Any) -> bool:
        return bool(self.row.client_pk == client.pk)

    def get_scope(self) -> str:
        return self.row.scope


def _rotated_within(token_hash_: str, now: datetime, grace: timedelta) -> bool:
    """Re-read a refresh token's state (not from the session's identity map): rotated by
    someone else less than ``grace`` ago and not revoked."""
    if not grace:
        return False
    state = db.session.execute(
        select(RefreshToken.rotated_at, RefreshToken.revoked_at).where(
            RefreshToken.token_hash == token_hash_
        )
    ).one_or_none()
    return (
        state is not None
        and state.revoked_at is None
        and state.rotated_at is not None
        and now - state.rotated_at < grace
    )


class RefreshTokenGrant(IssuesTokens, grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True
    ISSUES_ID_TOKEN = True

    def _validate_request_token(self, client: Any) -> Any:
        # Known before the token is looked up, so another client's token is refused
        # without touching it (BCP-26).
        self.request.client = client
        return super()._validate_request_token(client)

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshTokenView | None:
        if not isinstance(refresh_token, str) or len(refresh_token) > 200:
            return None
        row = db.session.get(RefreshToken, token_hash(refresh_token))
        client = self.request.client
        if row is None or row.client_pk != client.pk or row.revoked_at is not None:
            return None
        now = utcnow()
        if row.expires_at <= now or row.family_expires_at <= now:
            return None  # idle or absolute lifetime over (BCP-29)
        settings = runtime().settings
        if (
            row.sid is not None
            and alive_by_sid(db.session, row.sid, session_policy(settings)) is None
        ):
            # Without offline_access a grant ends with the login session it came from
            # (OIDC Core 11); refreshing also counts as activity that keeps it alive.
            token_store.revoke_family(db.session, row.family_id, settings.access_token_lifetime)
            return None
        grace = timedelta(seconds=settings.refresh_token_grace_period)
        if row.rotated_at is not None and now - row.rotated_at < grace:
            return RefreshTokenView(row)  # a concurrent refresh within the grace window
        claimed = db.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == row.token_hash,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(rotated_at=now)
        ).rowcount
        if claimed != 1 and _rotated_within(row.token_hash, now, grace):
            # Rotated by a concurrent refresh after we read it (our UPDATE waited for that
            # transaction): within the grace period that is no reuse (BCP-25).
            return RefreshTokenView(row)
        if claimed != 1:
            # Reuse of a rotated refresh token: someone holds a copy (BCP-24, 4.14.2).
            token_store.revoke_family(db.session, row.family_id, settings.access_token_lifetime)
            audit.record(
                db.session,
                "oauth.refresh_token_reused",
                outcome="failure",
                subject_id=row.user_id,
                client_id=client.client_id,
            )
            return None
        return RefreshTokenView(row)

    def authenticate_user(self, refresh_token: RefreshTokenView) -> User:
        return active_user(refresh_token.row.user_id)

    def revoke_old_credential(self, refresh_token: RefreshTokenView) -> None:
        """The old token was marked rotated when it was claimed."""

    def grant_context(self, user: User | None, scope: str) -> GrantContext:
        row: RefreshToken = self.request.refresh_token.row
        return self.stored_context(
            row,
            user,
            scope,
            sid=row.sid,
            family_id=row.family_id,
            family_expires_at=row.family_expires_at,
            claims=row.claims,
        )


# Client credentials -------------------------------------------------------------------


class ClientCredentialsGrant(IssuesTokens, grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    ISSUES_ID_TOKEN = False

    def grant_context(self, user: User | None, scope: str) -> GrantContext:
        # Authlib hands over the scope as requested: keep what this client may have.
        allowed = self.request.client.get_allowed_scope(scope or None).split()
        service_scope = " ".join(s for s in allowed if s not in USER_SCOPES)
        return GrantContext(client=self.request.client, scope=service_scope)
