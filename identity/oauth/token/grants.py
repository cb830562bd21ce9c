"""Authlib grants, overriding only storage and the checks Authlib leaves to us.

Codes and refresh tokens are claimed with one conditional UPDATE, so of any number of
concurrent redemptions exactly one wins (BCP-17, BCP-25); a replayed code or refresh token
revokes the whole token family (BCP-16, BCP-24). The claim happens in ``authenticate_user``,
which Authlib calls only once every check of the request has passed (PKCE verifier,
redirect URI, scope): a refused request leaves the code or token usable by the right one.
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

from identity import audit, revocation, telemetry
from identity.database import rowcount
from identity.extensions import db, lazy_session
from identity.models.base import utcnow
from identity.models.oauth import AuthorizationCode, RefreshToken
from identity.models.user import User
from identity.oauth.clients.metadata import AUTH_METHODS
from identity.oauth.scopes import ADMIN_SCOPE
from identity.oauth.tokens import GrantContext
from identity.random_tokens import token_hash
from identity.runtime import runtime
from identity.sessions import policy as session_policy
from identity.sessions.service import alive_by_sid

# Scopes that only make sense with a user; client_credentials tokens never carry them.
USER_SCOPES = {"openid", "profile", "email", "offline_access"}
MAX_TOKEN_LENGTH = 200  # longer than any code or refresh token this server makes
S256_CHALLENGE_LENGTH = 43  # RFC 7636 4.2: BASE64URL(SHA256(verifier))


def active_user(user_id: uuid.UUID) -> User:
    """The user behind a grant; disabled or deleted users get nothing (SESS-04)."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise InvalidGrantError("The user of this grant is no longer active.")
    return user


class IssuesTokens:
    """Routes Authlib's token generation to our TokenService with the grant's context."""

    ISSUES_ID_TOKEN = True
    GRANT_TYPE: str  # Authlib's grant class sets it
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
            lazy_session(),  # a client-credentials token may need no statement at all
            ctx,
            include_refresh_token=include_refresh_token,
            id_token=self.ISSUES_ID_TOKEN,
        )

    def save_token(self, token: dict[str, Any]) -> None:
        """Refresh tokens are stored while they are generated; nothing else is stored.
        Authlib calls this once per token response: the metrics count it here."""
        telemetry.token_issued(self.GRANT_TYPE)


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
        if len(data["code_challenge"]) != S256_CHALLENGE_LENGTH:
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
        if not isinstance(code, str) or len(code) > MAX_TOKEN_LENGTH:
            return None
        row = db.session.get(AuthorizationCode, token_hash(code))
        if row is None or row.client_pk != client.pk:
            return None  # BCP-18: a code is bound to its client
        if row.used_at is not None:
            self._replayed(row, client)
            return None
        if row.expires_at <= utcnow():
            return None
        return CodeView(row)

    def _replayed(self, row: AuthorizationCode, client: Any) -> None:
        """RFC 6749 section 4.1.2: a second use revokes what the first one issued."""
        revocation.revoke_family(
            db.session(), row.family_id, runtime().settings.access_token_lifetime
        )
        audit.record(
            db.session(),
            "oauth.code_replayed",
            outcome="failure",
            subject_id=row.user_id,
            client_id=client.client_id,
        )

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        """Codes are kept, marked used, so that a replay is recognised."""

    def authenticate_user(self, authorization_code: CodeView) -> User:
        """The request passed every check: spend the code now, race-free."""
        row = authorization_code.row
        user = active_user(row.user_id)
        claimed = rowcount(
            db.session.execute(
                update(AuthorizationCode)
                .where(
                    AuthorizationCode.code_hash == row.code_hash,
                    AuthorizationCode.used_at.is_(None),
                )
                .values(used_at=utcnow())
            )
        )
        if claimed != 1:  # a concurrent redemption won
            self._replayed(row, self.request.client)
            raise InvalidGrantError("Invalid 'code' in request.")
        return user

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
    # Rotated by a concurrent refresh within the grace period: nothing left to claim.
    claimed: bool = False
    # Loaded with the token (held here, or the session's weak identity map may drop it).
    user: User | None = None

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

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshTokenView | None:
        if not isinstance(refresh_token, str) or len(refresh_token) > MAX_TOKEN_LENGTH:
            return None
        # The token and its user in one round trip: authenticate_user then finds the user
        # in the session's identity map.
        found = db.session.execute(
            select(RefreshToken, User)
            .outerjoin(User, User.id == RefreshToken.user_id)
            .where(RefreshToken.token_hash == token_hash(refresh_token))
        ).first()
        row, user = found if found is not None else (None, None)
        # Authlib's validate_token_request authenticates the client and sets it on the
        # request before it asks for the token, so another client's token is refused here
        # without touching it (BCP-26).
        client = self.request.client
        if row is None or row.client_pk != client.pk or row.revoked_at is not None:
            return None
        now = utcnow()
        if row.expires_at <= now or row.family_expires_at <= now:
            return None  # idle or absolute lifetime over (BCP-29)
        settings = runtime().settings
        if (
            row.sid is not None
            and alive_by_sid(db.session(), row.sid, session_policy(settings)) is None
        ):
            # Without offline_access a grant ends with the login session it came from
            # (OIDC Core 11); refreshing also counts as activity that keeps it alive.
            revocation.revoke_family(db.session(), row.family_id, settings.access_token_lifetime)
            return None
        if row.rotated_at is not None:
            if now - row.rotated_at < timedelta(seconds=settings.refresh_token_grace_period):
                return RefreshTokenView(row, claimed=True, user=user)  # a concurrent refresh
            self._reused(row)
            return None
        return RefreshTokenView(row, user=user)

    def _reused(self, row: RefreshToken) -> None:
        """Reuse of a rotated refresh token: someone holds a copy (BCP-24, 4.14.2)."""
        revocation.revoke_family(
            db.session(), row.family_id, runtime().settings.access_token_lifetime
        )
        audit.record(
            db.session(),
            "oauth.refresh_token_reused",
            outcome="failure",
            subject_id=row.user_id,
            client_id=self.request.client.client_id,
        )

    def authenticate_user(self, refresh_token: RefreshTokenView) -> User:
        """The request passed every check (scope included): rotate the token now."""
        row = refresh_token.row
        user = refresh_token.user
        if user is None or not user.is_active:
            user = active_user(row.user_id)  # raises: gone or disabled
        if refresh_token.claimed:
            return user
        now = utcnow()
        claimed = rowcount(
            db.session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.token_hash == row.token_hash,
                    RefreshToken.rotated_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(rotated_at=now)
            )
        )
        grace = timedelta(seconds=runtime().settings.refresh_token_grace_period)
        if claimed != 1 and not _rotated_within(row.token_hash, now, grace):
            # Not a concurrent refresh within the grace period (our UPDATE waited for that
            # transaction, BCP-25): reuse, or revoked meanwhile.
            self._reused(row)
            raise InvalidGrantError()
        return user

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
        if ADMIN_SCOPE in (scope or "").split() and ADMIN_SCOPE not in allowed:
            # The admin scope follows the service account's permissions, not the client's
            # registered scopes: TokenService refuses it (invalid_scope) without them.
            allowed.append(ADMIN_SCOPE)
        service_scope = " ".join(s for s in allowed if s not in USER_SCOPES)
        return GrantContext(client=self.request.client, scope=service_scope)
