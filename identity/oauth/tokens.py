"""Issuing and checking tokens.

* Access tokens are JWTs per RFC 9068 (``typ: at+jwt``), signed with the active key of the
  configured algorithm; issuing one writes nothing to the database.
* ID tokens follow OpenID Connect Core 2 and 3.1.3.6 (``at_hash``), signed with the
  client's registered ``id_token_signed_response_alg``.
* Refresh tokens are opaque, stored as SHA-256 hashes, and rotate within a family.
* Revocation of JWT access tokens is remembered in ``token_revocations`` until they expire;
  checking a token is a signature check plus a look-up in this process's revocation state
  (identity.revocation_state), or one indexed read while that state is not current.
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oidc.core.util import create_half_hash
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy import CompoundSelect, Uuid, bindparam, literal_column, select, union_all
from sqlalchemy.orm import Session

from identity.database import read_rows
from identity.models.base import utcnow
from identity.models.oauth import RefreshToken, TokenRevocation
from identity.models.user import User
from identity.oauth.clients.service import ClientCache, ClientView
from identity.oauth.keys import KeyStore
from identity.oauth.scopes import ADMIN_SCOPE, claims_of, released_claims
from identity.random_tokens import new_token, token_hash
from identity.rbac.permissions import Permission
from identity.rbac.policy import PrincipalKind, Snapshot, check, holds_any
from identity.rbac.store import SnapshotCache
from identity.revocation import CLOCK_LEEWAY
from identity.revocation_state import RevocationState, is_revoked_by, revocation_keys
from identity.settings import Settings

# Tokens larger than this are refused before any parsing (TOK-06, Authlib CVE-2025-61920).
MAX_JWT_LENGTH = 8192
MAX_KID_LENGTH = 64

warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120  # seconds: it is delivered at once, or made again for a retry


@dataclass
class GrantContext:
    """Who is authorised, for which client and scope, and how they authenticated."""

    client: ClientView
    scope: str
    user: User | None = None
    auth_time: datetime | None = None
    amr: list[str] = field(default_factory=list)
    acr: str | None = None
    sid: str | None = None
    family_id: uuid.UUID | None = None
    family_expires_at: datetime | None = None
    nonce: str | None = None
    claims: dict[str, Any] | None = None

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()


def authentication_claims(ctx: GrantContext) -> dict[str, Any]:
    """How and when the user signed in (OIDC Core 2): the same in ID and access tokens."""
    claims: dict[str, Any] = {}
    if ctx.auth_time is not None:
        claims["auth_time"] = int(ctx.auth_time.timestamp())
    if ctx.acr:
        claims["acr"] = ctx.acr
    if ctx.amr:
        claims["amr"] = ctx.amr
    if ctx.sid:
        claims["sid"] = ctx.sid
    return claims


class TokenService:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        clients: ClientCache,
        rbac: SnapshotCache,
        revocations: RevocationState | None = None,
    ) -> None:
        self.settings = settings
        self.issuer = settings.issuer
        self.keys = keys
        self.clients = clients
        self.rbac = rbac
        self.revocations = revocations if revocations is not None else RevocationState(clients.feed)

    # Issuing -------------------------------------------------------------------------

    def issue(
        self, session: Session, ctx: GrantContext, *, include_refresh_token: bool, id_token: bool
    ) -> dict[str, Any]:
        access = self.access_of(session, ctx)
        if ctx.user is not None and ctx.family_id is None:
            # Every user grant is a family, so revoking its refresh token also reaches the
            # access token issued with it (the device grant has no code to take it from).
            ctx.family_id = uuid.uuid4()
        access_token, expires_in = self.access_token(session, ctx, access)
        token: dict[str, Any] = {
            "token_type": "Bearer",  # RFC 6750's name, not a secret  # nosec B105
            "access_token": access_token,
            "expires_in": expires_in,
            "scope": ctx.scope,
        }
        if include_refresh_token and ctx.user is not None:
            token["refresh_token"] = self.store_refresh_token(session, ctx)
        if id_token and ctx.user is not None and "openid" in ctx.scopes:
            token["id_token"] = self.id_token(
                session, ctx, access_token=access_token, access=access
            )
        return token

    def _sign(
        self, session: Session, alg: str, header: dict[str, Any], claims: dict[str, Any]
    ) -> str:
        ring = self.keys.ring(session)
        if alg not in ring.signing:
            raise RuntimeError(f"no active {alg} signing key; run `identity init`")
        kid, key = ring.signing[alg]
        return jwt.encode({**header, "alg": alg, "kid": kid}, claims, key, algorithms=[alg])

    def logout_token(
        self, session: Session, client_id: str, alg: str, sub: str, sid: str | None
    ) -> str:
        """OpenID Connect Back-Channel Logout 1.0 section 2.4: signed like the client's ID
        tokens, typed ``logout+jwt``, never with a nonce."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_LIFETIME,
            "jti": new_token(16),
            "sub": sub,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        if sid is not None:
            claims["sid"] = sid
        return self._sign(session, alg, {"typ": "logout+jwt"}, claims)

    def security_event_token(
        self, session: Session, client_id: str, alg: str, event: str, sub: str
    ) -> str:
        """A Security Event Token (RFC 8417) about one account, for one client: typed
        ``secevent+jwt``, the subject as an issuer and subject pair (RFC 9493), no ``sub``
        or ``exp`` of its own (RFC 8417 sections 2.2 and 4)."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": int(time.time()),
            "jti": new_token(16),
            "events": {event: {"subject": {"format": "iss_sub", "iss": self.issuer, "sub": sub}}},
        }
        return self._sign(session, alg, {"typ": "secevent+jwt"}, claims)

    def access_of(self, session: Session, ctx: GrantContext) -> dict[str, list[str]]:
        """The subject's roles and permissions for this client: every role it has here
        (directly, through groups, inherited), and of the permissions the client chose for
        its tokens, those the subject holds. A token asking for identity:admin needs one
        of identity's own permissions (else invalid_scope)."""
        snapshot = self.rbac.get(session)
        kind: PrincipalKind = "user" if ctx.user is not None else "client"
        principal = ctx.user.id if ctx.user is not None else ctx.client.pk
        if ADMIN_SCOPE in ctx.scopes and not holds_any(snapshot, kind, principal, Permission):
            raise InvalidScopeError(
                description=f"The {kind} holds no administrative permission for {ADMIN_SCOPE}."
            )
        return self.subject_access(session, kind, principal, ctx.client, snapshot)

    def subject_access(
        self,
        session: Session,
        kind: PrincipalKind,
        principal: uuid.UUID,
        client: ClientView,
        snapshot: Snapshot | None = None,
    ) -> dict[str, list[str]]:
        """``roles`` and ``permissions`` claims of a user or service account for a client
        (``snapshot``: the policy snapshot the caller already holds)."""
        if snapshot is None:
            snapshot = self.rbac.get(session)
        scope = client.pk
        return {
            "roles": snapshot.role_names(kind, principal, scope),
            "permissions": [
                name
                for name in client.token_permissions
                if check(snapshot, kind, principal, name, scope).allowed
            ],
        }

    def access_token(
        self, session: Session, ctx: GrantContext, access: dict[str, list[str]] | None = None
    ) -> tuple[str, int]:
        now = int(time.time())
        lifetime = self.settings.access_token_lifetime
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": str(ctx.user.id) if ctx.user else ctx.client.client_id,
            "aud": ctx.client.client_id,
            "client_id": ctx.client.client_id,
            "scope": ctx.scope,
            "jti": new_token(16),
            "iat": now,
            "exp": now + lifetime,
        }
        if ctx.user is not None:
            claims.update(authentication_claims(ctx))
            if ctx.family_id:
                claims["gid"] = str(ctx.family_id)
            requested = (ctx.claims or {}).get("userinfo")
            if requested:
                # OIDC Core 5.5: claims asked for at the UserInfo endpoint ride along with
                # the token (names the server knows only, so the token stays small).
                # Only claims the client may have (a scope it is registered for carries them).
                allowed = claims_of(ctx.client.scopes)
                claims["userinfo_claims"] = sorted(n for n in requested if n in allowed)
        access = access if access is not None else self.access_of(session, ctx)
        # RFC 9068 section 2.2.3.1 takes "roles" from SCIM, where an empty array and an
        # absent attribute mean the same (RFC 7643 section 2.5): leave it out when empty.
        # RFC 9068 validators refuse a blank claim (Authlib's JWTBearerTokenValidator did).
        for name in ("roles", "permissions"):
            if access[name]:
                claims[name] = access[name]
        header = {"typ": "at+jwt"}
        return self._sign(session, self.settings.signing_alg, header, claims), lifetime

    def id_token(
        self,
        session: Session,
        ctx: GrantContext,
        *,
        access_token: str | None = None,
        access: dict[str, list[str]] | None = None,
    ) -> str:
        assert ctx.user is not None
        alg = ctx.client.meta.get("id_token_signed_response_alg", "RS256")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": ctx.client.client_id,
            "azp": ctx.client.client_id,
            "iat": now,
            "exp": now + self.settings.id_token_lifetime,
        }
        claims.update(authentication_claims(ctx))
        if ctx.nonce:
            claims["nonce"] = ctx.nonce
        if access_token:
            claims["at_hash"] = create_half_hash(access_token, alg).decode()
        requested = (ctx.claims or {}).get("id_token") if ctx.claims else None
        access = access if access is not None else self.access_of(session, ctx)
        claims.update(released_claims(ctx.user, ctx.scopes, requested, ctx.client.scopes, access))
        return self._sign(session, alg, {"typ": "JWT"}, claims)

    def store_refresh_token(self, session: Session, ctx: GrantContext) -> str:
        assert ctx.user is not None
        now = utcnow()
        family_expires = ctx.family_expires_at or now + timedelta(
            seconds=self.settings.refresh_token_absolute_lifetime
        )
        token = new_token()
        session.add(
            RefreshToken(
                token_hash=token_hash(token),
                family_id=ctx.family_id or uuid.uuid4(),
                client_pk=ctx.client.pk,
                user_id=ctx.user.id,
                scope=ctx.scope,
                auth_time=ctx.auth_time or now,
                amr=ctx.amr,
                acr=ctx.acr,
                # offline_access grants outlive the login session (OIDC Core 11).
                sid=None if "offline_access" in ctx.scopes else ctx.sid,
                claims=ctx.claims,
                issued_at=now,
                expires_at=min(
                    now + timedelta(seconds=self.settings.refresh_token_idle_lifetime),
                    family_expires,
                ),
                family_expires_at=family_expires,
            )
        )
        return token

    # Checking ------------------------------------------------------------------------

    def verify_jwt(
        self, session: Session, token: str, *, typ: str, check_exp: bool = True
    ) -> dict[str, Any] | None:
        """Claims of a JWT this server signed, or None.

        Only the server's own keys and algorithms are accepted: the key comes from our
        ring by ``kid`` and the algorithm is pinned to that key's, so ``alg: none``, HMAC
        keyed with a public key and keys supplied in the header all fail (TOK-01..04).
        """
        if not isinstance(token, str) or not token or len(token) > MAX_JWT_LENGTH:
            return None
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError):
            return None
        kid, header_typ = header.get("kid"), header.get("typ")
        if (
            # Header members are attacker-controlled JSON: check types before use (TOK-03).
            not isinstance(header_typ, str)
            or header_typ.lower() != typ.lower()
            or not isinstance(kid, str)
            or len(kid) > MAX_KID_LENGTH
        ):
            return None
        found = self.keys.verification_key(session, kid)
        if found is None or header.get("alg") != found[0]:
            return None
        alg, key = found
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, RecursionError):  # deeply nested JSON (TOK-06)
            return None
        now = time.time()
        if claims.get("iss") != self.issuer:
            return None
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or iat > now + CLOCK_LEEWAY:
            return None
        if check_exp and exp <= now - CLOCK_LEEWAY:
            return None
        # RFC 7519 section 4.1.5: not to be accepted before nbf (TOK-08).
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int) or nbf > now + CLOCK_LEEWAY):
            return None
        return dict(claims)

    def verify_access_token(self, session: Session, token: str) -> dict[str, Any] | None:
        """Claims of a valid, unrevoked access token, or None (RFC 9068 section 4)."""
        claims = self.verify_jwt(session, token, typ="at+jwt")
        if claims is None or not isinstance(claims.get("jti"), str):
            return None
        if self.clients.get(session, str(claims.get("client_id", ""))) is None:
            return None  # the client was deleted
        user_id = None
        if claims.get("sub") != claims.get("client_id"):
            # A user's token ends with the user, however they were removed or disabled
            # (TOK-12; RFC 7662 section 2.2: "active" means usable right now).
            try:
                user_id = uuid.UUID(str(claims.get("sub")))
            except ValueError:
                return None
        if self.revocations.current:
            # In memory, kept current by the change channel (identity.revocation_state).
            return None if self.revocations.ends(claims, user_id) else claims
        params = {**_revocation_params(claims), "user_id": user_id}
        if self.settings.is_sqlite:
            rows = session.execute(_TOKEN_STATE, params).all()
        else:
            rows = read_rows(self.settings, _TOKEN_STATE, params)
        if is_revoked_by(claims, [row for row in rows if row[0] != _USER_ROW]):
            return None
        if user_id is not None and not any(
            key == _USER_ROW and disabled_at is None for key, disabled_at in rows
        ):
            return None  # no such user any more, or disabled
        return claims


# Revocation ----------------------------------------------------------------------------


def _revocation_params(claims: dict[str, Any]) -> dict[str, str]:
    keys = revocation_keys(claims)
    # The statements take three keys: a token with fewer repeats its first one.
    return {f"k{i}": keys[min(i, len(keys) - 1)] for i in range(3)}


_REVOCATIONS = select(TokenRevocation.key, TokenRevocation.revoked_at).where(
    TokenRevocation.key.in_([bindparam("k0"), bindparam("k1"), bindparam("k2")])
)
# Everything that can end a valid access token early, in one statement and one round trip
# (primary-key look-ups): its revocation keys and, for a user's token, the user's row. Built
# once, so SQLAlchemy compiles it once. User rows are marked with a key no revocation has.
_USER_ROW = "user"
_TOKEN_STATE: CompoundSelect = union_all(
    _REVOCATIONS,
    select(literal_column(f"'{_USER_ROW}'"), User.disabled_at).where(
        User.id == bindparam("user_id", type_=Uuid)
    ),
)
