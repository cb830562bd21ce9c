"""The authorization endpoint: validation and decisions, as a short list of named checks.

Order matters (RFC 6749 4.1.2.1, BCP-05/06): the client and redirect URI are validated
first; until both are known good every error is shown on our own page and nothing is
redirected. After that, errors go back to the client through the requested response mode,
always with ``state`` and ``iss`` (RFC 9207).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from identity.auth.methods import ACRS, satisfies
from identity.auth.service import Factors
from identity.database import dialect_insert, rowcount
from identity.extensions import db
from identity.models.base import new_uuid, utcnow
from identity.models.oauth import Consent, PendingAuthorization
from identity.models.session import LoginSession
from identity.models.user import User
from identity.oauth.authorization_server import server
from identity.oauth.authorize import request_objects
from identity.oauth.scopes import USER_CLAIMS, claims_of, permitted_claims_request
from identity.random_tokens import new_token, token_hash
from identity.runtime import runtime

PAR_URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
RESPONSE_MODES = ("query", "form_post")
PROMPTS = {"none", "login", "consent", "select_account"}
PENDING_LIFETIME = timedelta(minutes=15)
EXPIRED_REQUEST = (
    "This sign-in request is unknown or has expired. Go back to the application and try again."
)
MAX_PARAM_LENGTH = 4096
# The whole request, as kept for sign-in and consent: an ID token hint and a claims request
# fit many times over.
MAX_REQUEST_LENGTH = 8192
MAX_NONCE_LENGTH = 512
MAX_PENDING_TOKEN_LENGTH = 100  # longer than any pending-request token this server makes
# The parameters an authorization request may carry (RFC 6749 4.1.1, RFC 7636, OIDC Core
# 3.1.2.1 and 5.5, RFC 9101, RFC 9126). Others are ignored (RFC 6749 section 3.1) and, above
# all, never stored: anyone can send a request without signing in.
AUTHORIZE_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "response_mode",
        "prompt",
        "max_age",
        "login_hint",
        "id_token_hint",
        "acr_values",
        "claims",
        "code_challenge",
        "code_challenge_method",
        "display",
        "ui_locales",
        "claims_locales",
        "request",
        "request_uri",
    }
)


class ErrorPage(Exception):
    """An error shown on our own page: the client or redirect URI cannot be trusted."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParamsPayload(OAuth2Payload):  # type: ignore[misc]
    """Authlib's view of a parameter set: ``data`` the first value of each parameter,
    ``datalist`` all of them (Authlib refuses a parameter given twice by it)."""

    def __init__(self, params: MultiDict[str, str]) -> None:
        self._first = {k: params[k] for k in params}
        self._every = {k: params.getlist(k) for k in params}

    @property
    def data(self) -> dict[str, str]:
        return self._first

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._every


class ParamsRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth2Request over an explicit parameter set (GET query, POST form, PAR or a
    stored pending request), never the merged query + body Flask would give."""

    def __init__(self, method: str, uri: str, params: MultiDict[str, str]) -> None:
        super().__init__(method=method, uri=uri, headers={})
        self.payload = ParamsPayload(params)
        self.login_session: LoginSession | None = None
        self.claims_request: dict[str, Any] | None = None

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.payload.data)


@dataclass
class Authorization:
    """A validated authorization request."""

    request: ParamsRequest
    grant: Any
    client: Any
    redirect_uri: str
    response_mode: str
    state: str | None
    prompts: set[str] = field(default_factory=set)
    max_age: int | None = None
    id_token_hint_sub: str | None = None
    # The ACR to reach (acr_values, or claims.id_token.acr), and the weakest one the
    # client accepts when it made acr essential (None: it takes what the sign-in reached).
    acr: str | None = None
    acr_floor: str | None = None
    client_requires_acr: bool = False

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.payload.data)

    @property
    def scopes(self) -> list[str]:
        return (self.request.scope or "").split()


# Reading and validating -----------------------------------------------------------------


def read_params(
    method: str, args: MultiDict[str, str], form: MultiDict[str, str]
) -> MultiDict[str, str]:
    """GET takes the query, POST the form body (OIDC Core 3.1.2.1); a parameter in both
    places is refused rather than guessed at (INPUT-10)."""
    if method == "POST":
        if set(args) & set(form):
            raise ErrorPage("A parameter was sent both in the URL and in the form.")
        return known_params(form)
    return known_params(args)


def known_params(params: MultiDict[str, str]) -> MultiDict[str, str]:
    """Only the parameters of an authorization request, within the size limits."""
    kept: MultiDict[str, str] = MultiDict(
        [(k, v) for k, v in params.items(multi=True) if k in AUTHORIZE_PARAMS]
    )
    check_single_values(kept)
    if sum(len(k) + len(v) for k, v in kept.items(multi=True)) > MAX_REQUEST_LENGTH:
        raise ErrorPage("The sign-in request is too large.")
    return kept


def check_single_values(params: MultiDict[str, str]) -> None:
    """RFC 6749 section 3.1: parameters must not repeat (INPUT-10)."""
    for key in params:
        values = params.getlist(key)
        if len(values) > 1:
            raise ErrorPage(f"The parameter '{key}' was sent more than once.")
        if len(values[0]) > MAX_PARAM_LENGTH:
            raise ErrorPage(f"The parameter '{key}' is too long.")


def resolve_pushed_request(session: Session, params: MultiDict[str, str]) -> MultiDict[str, str]:
    """RFC 9126 section 4: ``request_uri`` from PAR replaces every other parameter."""
    request_uri = params.get("request_uri")
    if not request_uri:
        return params
    if not request_uri.startswith(PAR_URN_PREFIX):
        return params  # reported as request_uri_not_supported once the client is validated
    row = session.get(PendingAuthorization, token_hash(request_uri[len(PAR_URN_PREFIX) :]))
    if row is None or not row.pushed or row.expires_at <= utcnow():
        raise ErrorPage("The pushed authorization request is unknown or has expired.")
    if params.get("client_id") != row.client.client_id:
        raise ErrorPage("The pushed authorization request belongs to another client.")
    session.delete(row)  # one use only
    return MultiDict(row.params)


def resolve_request_object(params: MultiDict[str, str]) -> MultiDict[str, str]:
    """A request object (``request``, or a ``request_uri`` other than PAR's) replaces the
    other parameters with those it carries (RFC 9101 section 5)."""

    if not request_objects.uses_request_object(params, PAR_URN_PREFIX):
        return params
    client_id = params.get("client_id")
    client = server().query_client(client_id) if client_id else None
    if client is None:
        raise ErrorPage("The application that sent you here is not registered.")
    rt = runtime()
    try:
        token = request_objects.request_object(client, params, rt.jwks_cache)
        claims = request_objects.verify(token, client, rt.settings.issuer, rt.jwks_cache)
    except OAuth2Error as error:
        # Nothing in the object can be trusted: the URL's redirect URI, when registered.
        redirect_uri = params.get("redirect_uri")
        if redirect_uri and client.check_redirect_uri(redirect_uri):
            mode = params.get("response_mode")
            mode = mode if mode in RESPONSE_MODES else "query"
            raise redirectable(error, redirect_uri, mode, params.get("state")) from None
        raise ErrorPage(error.description or error.error) from None
    return known_params(request_objects.as_params(claims, client.client_id))


def validate(params: MultiDict[str, str], method: str = "GET") -> Authorization:
    """Validate a request; raises ErrorPage (no redirect) or OAuth2Error (redirectable)."""

    check_single_values(params)
    request = ParamsRequest(method, runtime().settings.issuer + "/authorize", params)
    client_id = params.get("client_id")
    client = server().query_client(client_id) if client_id else None
    if client is None:
        raise ErrorPage("The application that sent you here is not registered.")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri or not client.check_redirect_uri(redirect_uri):
        raise ErrorPage("The application sent you to an address that is not registered for it.")

    # From here on the redirect URI is trusted: errors go back to the client.
    state = params.get("state")
    response_mode = params.get("response_mode") or "query"
    if response_mode not in RESPONSE_MODES:
        raise redirectable(
            InvalidRequestError("Unsupported response_mode."), redirect_uri, "query", state
        )
    try:
        grant = server().get_consent_grant(request=request, end_user=None)
    except OAuth2Error as error:
        raise redirectable(error, redirect_uri, response_mode, state) from None
    authz = Authorization(request, grant, client, redirect_uri, response_mode, state)
    try:
        check_openid_parameters(authz)
    except OAuth2Error as error:
        raise redirectable(error, redirect_uri, response_mode, state) from None
    return authz


def redirectable(
    error: OAuth2Error, redirect_uri: str, mode: str, state: str | None
) -> OAuth2Error:
    """The error, made to go back to the client's validated redirect URI (with ``state`` and
    in its response mode) instead of our own error page."""
    error.redirect_uri = redirect_uri
    error.state = state
    error.response_mode = mode
    return error


def read_acr_values(authz: Authorization, data: dict[str, str]) -> None:
    """acr_values (when no acr claim was asked for), then the client's own floor."""
    if authz.acr is None:
        # acr_values: voluntary, in order of preference; values we do not know are skipped.
        known = [v for v in (data.get("acr_values") or "").split() if v in ACRS]
        authz.acr = known[0] if known else None
    required = client_required_acr(authz.client)
    if required is not None and not satisfies(authz.acr, required):
        # The client's policy (default_acr_values, OIDC Registration 2): a floor, whatever
        # the request says; a user without a second factor sets one up first.
        authz.acr = required
        authz.client_requires_acr = True


def client_required_acr(client: Any) -> str | None:
    """The weakest ACR the client's registration requires (``default_acr_values``)."""
    values = [v for v in client.meta.get("default_acr_values") or [] if v in ACRS]
    return min(values, key=ACRS.index) if values else None


class UnmetAuthenticationRequirementsError(OAuth2Error):
    """OpenID Connect Core Unmet Authentication Requirements 1.0: the client made an ACR
    essential that this sign-in cannot reach (the user has no second factor)."""

    error = "unmet_authentication_requirements"


def read_acr_claim(authz: Authorization, id_token_claims: dict[str, Any]) -> None:
    """claims={"id_token": {"acr": {"essential": true, "values": [...]}}} (OIDC Core 5.5.1.1)."""
    request = id_token_claims.get("acr")
    if not isinstance(request, dict):
        return
    values = request.get("values")
    if not isinstance(values, list):
        values = [request["value"]] if isinstance(request.get("value"), str) else []
    known = [v for v in values if isinstance(v, str) and v in ACRS]
    if values and not known and request.get("essential") is True:
        raise redirectable(
            UnmetAuthenticationRequirementsError("None of the requested acr values is offered."),
            authz.redirect_uri,
            authz.response_mode,
            authz.state,
        )
    if known:
        authz.acr = known[0]
        if request.get("essential") is True:
            authz.acr_floor = min(known, key=ACRS.index)


def check_openid_parameters(authz: Authorization) -> None:
    """OpenID Connect Core 3.1.2.1 parameters Authlib leaves to us."""
    data = authz.params
    prompts = set((data.get("prompt") or "").split())
    if prompts - PROMPTS:
        raise InvalidRequestError("Unsupported prompt value.")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values.")
    authz.prompts = prompts
    if data.get("max_age") is not None:
        try:
            authz.max_age = int(data["max_age"])
        except ValueError:
            raise InvalidRequestError("max_age must be a number of seconds.") from None
        if authz.max_age < 0:
            raise InvalidRequestError("max_age must not be negative.")
    nonce = data.get("nonce")
    if nonce is not None and (not nonce or len(nonce) > MAX_NONCE_LENGTH):
        raise InvalidRequestError(f"nonce must be 1 to {MAX_NONCE_LENGTH} characters.")
    if data.get("claims"):
        try:
            claims = json.loads(data["claims"])
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            raise InvalidRequestError("claims must be a JSON object.") from None
        if not isinstance(claims, dict) or not all(
            isinstance(v, dict | None) for v in claims.values()
        ):
            raise InvalidRequestError("claims must be a JSON object of objects.")
        authz.request.claims_request = permitted_claims_request(claims, authz.client.scopes)
        read_acr_claim(authz, claims.get("id_token") or {})
    read_acr_values(authz, data)
    hint = data.get("id_token_hint")
    if hint:
        claims = runtime().tokens.verify_jwt(db.session(), hint, typ="JWT", check_exp=False)
        if claims is None or claims.get("aud") != authz.client.client_id:
            raise InvalidRequestError(
                "id_token_hint is not an ID token this server issued to this client."
            )
        authz.id_token_hint_sub = str(claims.get("sub"))


# Deciding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    action: str  # "login", "step_up" (a second factor first), "consent" or "issue"


def decide(
    session: Session,
    authz: Authorization,
    login: LoginSession | None,
    *,
    login_after: datetime | None = None,
    now: datetime | None = None,
) -> Decision:
    """What must happen before a code is issued (OIDC Core 3.1.2.3 and 3.1.2.4)."""
    now = now or utcnow()
    if needs_login(authz, login, login_after, now):
        if "none" in authz.prompts:
            raise redirectable(
                LoginRequiredError(), authz.redirect_uri, authz.response_mode, authz.state
            )
        return Decision("login")
    assert login is not None
    if authz.acr is not None and not satisfies(login.acr, authz.acr):
        if authz.client_requires_acr or Factors(session, runtime()).has_second_factor(login.user):
            if "none" in authz.prompts:
                raise redirectable(
                    InteractionRequiredError(), authz.redirect_uri, authz.response_mode, authz.state
                )
            return Decision("step_up")
        if authz.acr_floor is not None and not satisfies(login.acr, authz.acr_floor):
            raise redirectable(
                UnmetAuthenticationRequirementsError("The user has no second factor."),
                authz.redirect_uri,
                authz.response_mode,
                authz.state,
            )
    if needs_consent(session, authz, login.user):
        if "none" in authz.prompts:
            raise redirectable(
                ConsentRequiredError(), authz.redirect_uri, authz.response_mode, authz.state
            )
        return Decision("consent")
    return Decision("issue")


def needs_login(
    authz: Authorization, login: LoginSession | None, login_after: datetime | None, now: datetime
) -> bool:
    if login is None:
        return True
    fresh = login_after is not None and login.auth_time >= login_after
    if "login" in authz.prompts and not fresh:
        return True
    too_old = authz.max_age is not None and (now - login.auth_time).total_seconds() > authz.max_age
    if too_old and not fresh:
        return True
    # The hint names someone else than who is signed in (OIDC Core 3.1.2.1).
    return authz.id_token_hint_sub is not None and authz.id_token_hint_sub != str(login.user_id)


def needs_consent(session: Session, authz: Authorization, user: User) -> bool:
    client = authz.client
    if "consent" in authz.prompts:
        return True
    if client.first_party:  # never a dynamically registered client (TOK-16)
        return False
    granted = session.execute(
        select(Consent.scopes).where(Consent.user_id == user.id, Consent.client_pk == client.pk)
    ).scalar_one_or_none()
    if granted is None or not set(authz.scopes) <= set(granted):
        return True
    # OIDC Core 5.5: claims asked for one by one are released like scopes, so they need
    # consent too. Consents are remembered per scope: claims beyond the granted scopes'
    # claims are asked for again each time.
    return not requested_claims(authz) <= claims_of(granted)


def requested_claims(authz: Authorization) -> set[str]:
    """User claims named in the claims parameter, for the ID token or for UserInfo."""
    request = authz.request.claims_request or {}
    names = set(request.get("userinfo") or {}) | set(request.get("id_token") or {})
    return set(USER_CLAIMS & names)


def remember_consent(session: Session, user: User, client: Any, scopes: list[str]) -> None:
    """Add ``scopes`` to what the user granted the client. Race-free: two first consents
    at once (a double-submitted form, two tabs) both reading "none" and both inserting
    failed on the unique (user, client) constraint. Insert-if-missing, then lock the row
    and merge: the second waits for the first and adds its scopes to the first's."""
    now = utcnow()
    session.execute(
        dialect_insert(session, Consent)
        .values(
            id=new_uuid(),
            user_id=user.id,
            client_pk=client.pk,
            scopes=sorted(set(scopes)),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "client_pk"])
    )
    row = session.execute(
        select(Consent)
        .where(Consent.user_id == user.id, Consent.client_pk == client.pk)
        .with_for_update(of=Consent)  # not its client, joined in on the nullable side
        .execution_options(populate_existing=True)
    ).scalar_one()
    merged = sorted(set(row.scopes) | set(scopes))
    if merged != row.scopes:
        row.scopes = merged


# Pending requests ---------------------------------------------------------------------


def save_pending(session: Session, authz: Authorization) -> str:
    """Keep a request across sign-in and consent; returns the id for the URL."""
    return save_pending_params(session, authz.client, authz.params)


def save_pending_params(session: Session, client: Any, params: dict[str, str]) -> str:
    """Keep the parameters of a request whose client and redirect URI are valid (possibly
    an erroneous one, answered after sign-in); returns the id for the URL."""
    return _store_pending(session, client, params, PENDING_LIFETIME, pushed=False)


def push(session: Session, client: Any, params: dict[str, str], lifetime: int) -> str:
    """Keep a validated pushed request (RFC 9126); returns its ``request_uri``."""
    reference = _store_pending(session, client, params, timedelta(seconds=lifetime), pushed=True)
    return PAR_URN_PREFIX + reference


def _store_pending(
    session: Session, client: Any, params: dict[str, str], lifetime: timedelta, *, pushed: bool
) -> str:
    """One PendingAuthorization row, stored under the hash of the random id returned."""
    token = new_token()
    now = utcnow()
    session.add(
        PendingAuthorization(
            id_hash=token_hash(token),
            client_pk=client.pk,
            params=params,
            pushed=pushed,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def load_pending(session: Session, token: str) -> PendingAuthorization:
    if not token or len(token) > MAX_PENDING_TOKEN_LENGTH:
        raise ErrorPage(EXPIRED_REQUEST)
    row = session.get(PendingAuthorization, token_hash(token))
    if row is None or row.pushed or row.expires_at <= utcnow():
        raise ErrorPage(EXPIRED_REQUEST)
    return row


def purge_pending(session: Session) -> int:
    result = session.execute(
        delete(PendingAuthorization).where(PendingAuthorization.expires_at <= utcnow())
    )
    return rowcount(result)


# Responding -----------------------------------------------------------------------------


def issue_code(authz: Authorization, user: User, login: LoginSession) -> list[tuple[str, str]]:
    """Create and store the code; returns the response parameters."""
    request = authz.request
    request.user = user
    request.login_session = login
    code = authz.grant.generate_authorization_code()
    authz.grant.save_authorization_code(code, request)
    db.session.execute(
        update(Consent)
        .where(Consent.user_id == user.id, Consent.client_pk == authz.client.pk)
        .values(last_authorized_at=utcnow())
    )
    return response_params(authz, [("code", code)])


def response_params(authz: Authorization, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if authz.state is not None:
        params.append(("state", authz.state))
    params.append(("iss", runtime().settings.issuer))  # RFC 9207 section 2
    return params


def error_params(error: OAuth2Error) -> list[tuple[str, str]]:
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if error.state is not None:
        params.append(("state", error.state))
    params.append(("iss", runtime().settings.issuer))
    return params
