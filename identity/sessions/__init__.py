"""The signed-in browser: loads ``g.user`` from the session cookie, and sets the cookie."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, Request, Response, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from identity.auth.methods import acr_for
from identity.extensions import db
from identity.models.session import LoginSession
from identity.models.user import User
from identity.random_tokens import token_hash
from identity.revocation import revoke_session_grants
from identity.runtime import runtime
from identity.security import client_ip
from identity.sessions import service
from identity.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def cookie_name(settings: Settings) -> str:
    # __Host- binds the cookie to this exact origin over https (SESS-10).
    return "__Host-identity_session" if settings.issuer_is_https else "identity_session"


def policy(settings: Settings) -> service.SessionPolicy:
    return service.SessionPolicy(
        idle_timeout=timedelta(seconds=settings.session_idle_timeout),
        absolute_timeout=timedelta(seconds=settings.session_absolute_timeout),
    )


def current_user() -> User | None:
    return g.get("user")


def sign_in(user: User, amr: list[str], acr: str | None = None) -> None:
    """Replace whatever session the browser had with a fresh one (SESS-02)."""
    settings = runtime().settings
    old = request.cookies.get(cookie_name(settings))
    carried_sid = None
    if old:
        previous = db.session.get(LoginSession, token_hash(old))
        if previous is not None and previous.user_id == user.id:
            carried_sid = previous.sid  # re-authentication: the apps' grants stay
        elif previous is not None:
            # Someone else signs in on this browser: the previous user is signed out.
            revoke_session_grants(db.session(), previous.sid, settings.access_token_lifetime)
        service.end(db.session(), old)
    token, record = service.start(
        db.session(),
        user,
        policy(settings),
        amr=amr,
        acr=acr or acr_for(amr),
        ip=client_ip(),
        user_agent=request.user_agent.string,
        sid=carried_sid,
    )
    # Every way of signing in (password, passkey, second step) counts as activity: the
    # inactive-account retention starts over.
    user.last_sign_in_at = record.created_at
    user.inactivity_warned_at = None
    # A new Flask session too, so the CSRF token from before sign-in is not reused.
    session.clear()
    g.user = user
    g.login_session = record
    g.set_session_cookie = token


def sign_out() -> None:
    """End this browser's login session and the grants tied to it (offline_access grants
    survive; BCP-28 documents this policy in docs/oidc.md)."""
    settings = runtime().settings
    login = g.get("login_session")
    if login is not None:
        revoke_session_grants(db.session(), login.sid, settings.access_token_lifetime)
    token = request.cookies.get(cookie_name(settings))
    if token:
        service.end(db.session(), token)
    session.clear()
    g.user = None
    g.login_session = None
    g.clear_session_cookie = True


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("accounts.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session (CSRF token, flash messages), without building the
    itsdangerous signer for requests that carry no session cookie: API clients never do,
    and for them that set-up was a noticeable share of every request."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what the parent returns for a missing cookie
        return super().open_session(app, request)


def setup_login_sessions(app: Flask, settings: Settings) -> None:
    name = cookie_name(settings)
    session_policy = policy(settings)
    app.session_interface = CookieSessionInterface()

    @app.before_request
    def _load_user() -> None:
        g.user = None
        g.login_session = None
        token = request.cookies.get(name)
        if not token or request.endpoint in ("static", "health.healthz", "health.readyz"):
            return
        record = service.resolve(db.session(), token, session_policy)
        if record is None:
            g.clear_session_cookie = True
        else:
            g.login_session = record
            g.user = record.user

    @app.after_request
    def _set_cookie(response: Response) -> Response:
        token = g.pop("set_session_cookie", None)
        if token:
            response.set_cookie(
                name,
                token,
                max_age=settings.session_absolute_timeout,
                path="/",
                secure=settings.issuer_is_https,
                httponly=True,
                samesite="Lax",
            )
        elif g.pop("clear_session_cookie", False):
            response.delete_cookie(
                name, path="/", secure=settings.issuer_is_https, httponly=True, samesite="Lax"
            )
        return response
