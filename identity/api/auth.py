"""Who calls the admin API, and whether they may.

A caller is a bearer access token issued by identity itself with the scope
``identity:admin`` (its subject is a user or a client's service account), or a signed-in
browser (with a second factor), which may only read: its changes go through the admin
console, where sensitive ones ask for a fresh proof. What either may do is decided by RBAC
on the subject, per operation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask import g, request

from identity import audit
from identity.auth.methods import ACR_TWO_FACTORS, acr_for
from identity.exceptions import Forbidden, Unauthorized
from identity.extensions import db
from identity.rbac.policy import Decision, check
from identity.rbac.service import Principal
from identity.runtime import runtime
from identity.sessions import current_user

ADMIN_SCOPE = "identity:admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    principal: Principal
    via: str  # "token" or "session"
    client_id: str | None = None  # the token's client

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.id if self.principal.kind == "user" else None


def authenticate() -> Caller:
    """The caller of this request, or Unauthorized (401 with a Bearer challenge)."""
    cached = g.get("api_caller")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    header = request.headers.get("Authorization")
    caller = _token_caller(header) if header is not None else _session_caller()
    g.api_caller = caller
    if caller.principal.kind == "client":
        # Audit records of this request name the service account that acted.
        db.session().info[audit.ACTOR_CLIENT] = caller.client_id
    return caller


def _token_caller(header: str) -> Caller:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Send an access token as Authorization: Bearer.",
            'Bearer error="invalid_request"',
        )
    session = db.session()
    claims = runtime().tokens.verify_access_token(session, token.strip())
    if claims is None:
        raise Unauthorized(
            "The access token is invalid, expired or revoked.", 'Bearer error="invalid_token"'
        )
    if ADMIN_SCOPE not in str(claims.get("scope", "")).split():
        error = Forbidden(f"The access token lacks the {ADMIN_SCOPE} scope.")
        error.headers.append(
            ("WWW-Authenticate", f'Bearer error="insufficient_scope", scope="{ADMIN_SCOPE}"')
        )
        raise error
    client_id = str(claims.get("client_id"))
    if claims.get("sub") == client_id:
        client = runtime().clients.get(session, client_id)
        if client is None:  # verify_access_token checked it; deleted since
            raise Unauthorized("The access token is invalid.", 'Bearer error="invalid_token"')
        return Caller(Principal("client", client.pk), "token", client_id)
    return Caller(Principal("user", uuid.UUID(str(claims["sub"]))), "token", client_id)


def _session_caller() -> Caller:
    user = current_user()
    if user is None:
        raise Unauthorized("Authentication is required: send a bearer access token.")
    if runtime().settings.admin_mfa_required and acr_for(list(g.login_session.amr)) != (
        ACR_TWO_FACTORS
    ):
        # The same door as the console's (identity.admin.console): a browser reaches admin
        # operations only after a second factor, unless the operator turned that off.
        raise Forbidden(
            "Calling the admin API from a browser needs a sign-in with a second factor"
            " (admin_mfa_required)."
        )
    if request.method not in SAFE_METHODS:
        # A browser reads the API (the Swagger UI); it changes things through the console,
        # whose sensitive actions ask for a fresh proof (identity.admin.proofs), which a
        # request from a page's script would skip.
        raise Forbidden(
            "From a browser session the admin API only reads: make changes in the admin"
            " console (/admin), or call the API with a bearer access token."
        )
    return Caller(Principal("user", user.id), "session")


def decide(caller: Caller, permission: str, scope: uuid.UUID | None = None) -> Decision:
    snapshot = runtime().rbac.get(db.session())
    return check(snapshot, caller.principal.kind, caller.principal.id, permission, scope)


def authorize(caller: Caller, permission: str, scope: uuid.UUID | None = None) -> None:
    """Forbidden unless the caller holds ``permission`` (RBAC, deny by default)."""
    decision = decide(caller, permission, scope)
    if not decision.allowed:
        error = Forbidden(f"This needs the permission {permission}.")
        error.extra["missing"] = permission
        raise error
