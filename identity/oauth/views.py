"""Authorization endpoint pages: /authorize, its resumption after sign-in, and consent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import AccessDeniedError, OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, Response, g, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import HiddenField

from identity import audit
from identity.extensions import csrf, db
from identity.oauth import authorize as flow
from identity.oauth.authorize import ErrorPage
from identity.oauth.scopes import describe
from identity.oauth.server import server
from identity.security import CONTENT_SECURITY_POLICY
from identity.sessions import current_user

bp = Blueprint("oauth", __name__)
# Answers to silent (prompt=none) requests, which RFC 9700 4.11.2 lets through unprompted.
SILENT_ERRORS = (LoginRequiredError, ConsentRequiredError)


class ConsentForm(FlaskForm):
    request_id = HiddenField()


def error_page(message: str) -> ResponseReturnValue:
    return render_template("oauth/error.html", message=message), 400


def deliver(redirect_uri: str, response_mode: str, params: list[tuple[str, str]]) -> Response:
    """Send parameters to the client's (validated) redirect URI in its response mode."""
    if response_mode == "form_post":
        return form_post(redirect_uri, params)
    # 303 after a POST so the browser never replays the form to the client (BCP-42).
    return redirect(
        add_params_to_uri(redirect_uri, params), code=303 if request.method == "POST" else 302
    )


def form_post(redirect_uri: str, params: list[tuple[str, str]]) -> Response:
    """OAuth 2.0 Form Post Response Mode; values are HTML-escaped by Jinja (BCP-46)."""
    html = render_template("oauth/form_post.html", action=redirect_uri, params=params)
    response = make_response(html)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"form-action {flow.redirect_origin(redirect_uri)}; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def redirect_error(error: OAuth2Error) -> Response:
    return deliver(
        error.redirect_uri, getattr(error, "response_mode", "query"), flow.error_params(error)
    )


def run(
    params: MultiDict[str, str],
    method: str,
    pending_token: str | None = None,
    login_after: datetime | None = None,
) -> ResponseReturnValue:
    """Validate, decide, and either send the user to sign in or consent, or answer."""
    try:
        authz = flow.validate(params, method)
        decision = flow.decide(db.session, authz, g.login_session, login_after=login_after)
    except ErrorPage as error:
        db.session.commit()
        return error_page(error.message)
    except OAuth2Error as error:
        if getattr(error, "redirect_uri", None) is None:
            return error_page(error.description or error.error)
        return answer_error(error, params, pending_token)

    if decision.action in ("login", "consent"):
        token = pending_token or flow.save_pending(db.session, authz)
        db.session.commit()
        if decision.action == "login":
            return sign_in_first(token, authz.params.get("login_hint", ""))
        form = ConsentForm(request_id=token)
        claims = sorted(flow.requested_claims(authz))  # for UserInfo or the ID token
        return render_template(
            "oauth/consent.html",
            form=form,
            client=authz.client,
            scopes=describe(authz.scopes),
            claims=claims,
            user=current_user(),
        )

    user = current_user()
    assert user is not None and g.login_session is not None
    params_out = flow.issue_code(authz, user, g.login_session)
    if pending_token:
        db.session.delete(flow.load_pending(db.session, pending_token))
    audit.record(
        db.session,
        "oauth.authorize",
        actor_id=user.id,
        subject_id=user.id,
        client_id=authz.client.client_id,
        scope=authz.request.scope or "",
    )
    db.session.commit()
    return deliver(authz.redirect_uri, authz.response_mode, params_out)


def sign_in_first(request_id: str, login_hint: str) -> ResponseReturnValue:
    return redirect(
        url_for(
            "accounts.sign_in",
            next=url_for("oauth.resume", request_id=request_id),
            login_hint=login_hint,
            force="1",
        )
    )


def answer_error(
    error: OAuth2Error, params: MultiDict[str, str], pending_token: str | None
) -> ResponseReturnValue:
    """Send an error to the client's validated redirect URI, but (RFC 9700 section 4.11.2)
    only after the user has signed in, silent ``prompt=none`` requests excepted, and never
    automatically to a self-registered client nobody reviewed (BCP-07)."""
    client = server().query_client(params.get("client_id") or "")
    silent = "none" in (params.get("prompt") or "").split()
    if g.login_session is None and not silent:
        token = pending_token or flow.save_pending_params(db.session, client, dict(params))
        db.session.commit()
        return sign_in_first(token, params.get("login_hint", ""))
    if pending_token:
        db.session.delete(flow.load_pending(db.session, pending_token))
    db.session.commit()
    if client.registered_via == "dynamic" and not isinstance(error, SILENT_ERRORS):
        return untrusted_error(client, error)
    return redirect_error(error)


def untrusted_error(client: Any, error: OAuth2Error) -> ResponseReturnValue:
    """RFC 9700 4.11.2: the AS SHOULD redirect automatically only to redirect URIs it
    trusts; for an unreviewed client the user is told and decides whether to go back."""
    params = flow.error_params(error)
    mode = getattr(error, "response_mode", "query")
    origin = flow.redirect_origin(error.redirect_uri)
    html = render_template(
        "oauth/error_untrusted.html",
        client=client,
        error=error,
        mode=mode,
        action=error.redirect_uri,
        params=params,
        link=add_params_to_uri(error.redirect_uri, params),
        origin=origin,
    )
    response = make_response(html, 400)
    if mode == "form_post":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action {origin}"
        )
    return response


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # relying parties may POST the request (OIDC Core 3.1.2.1); it changes nothing
def authorize() -> ResponseReturnValue:
    try:
        params = flow.read_params(request.method, request.args, request.form)
        params = flow.resolve_pushed_request(db.session, params)
    except ErrorPage as error:
        return error_page(error.message)
    return run(params, request.method)


@bp.get("/authorize/resume/<request_id>")
def resume(request_id: str) -> ResponseReturnValue:
    """Back from sign-in: continue the stored request; a forced login counts as fresh when
    it happened after the request arrived (prompt=login, max_age)."""
    try:
        pending = flow.load_pending(db.session, request_id)
    except ErrorPage as error:
        return error_page(error.message)
    return run(
        MultiDict(pending.params), "GET", pending_token=request_id, login_after=pending.created_at
    )


@bp.post("/authorize/consent")
def consent() -> ResponseReturnValue:
    form = ConsentForm()
    if not form.validate_on_submit():
        return error_page("The consent form expired. Go back to the application and try again.")
    try:
        pending = flow.load_pending(db.session, form.request_id.data or "")
        authz = flow.validate(MultiDict(pending.params), "POST")
    except ErrorPage as error:
        return error_page(error.message)
    except OAuth2Error as error:
        if getattr(error, "redirect_uri", None) is None:
            return error_page(error.description or error.error)
        return redirect_error(error)
    user = current_user()
    if user is None or g.login_session is None:
        return redirect(
            url_for(
                "accounts.sign_in", next=url_for("oauth.resume", request_id=form.request_id.data)
            )
        )
    db.session.delete(pending)
    if request.form.get("decision") != "allow":
        audit.record(
            db.session,
            "oauth.consent",
            outcome="failure",
            actor_id=user.id,
            subject_id=user.id,
            client_id=authz.client.client_id,
            reason="denied",
        )
        db.session.commit()
        error = AccessDeniedError()
        flow._redirectable(error, authz.redirect_uri, authz.response_mode, authz.state)
        return redirect_error(error)
    flow.remember_consent(db.session, user, authz.client, authz.scopes)
    audit.record(
        db.session,
        "oauth.consent",
        actor_id=user.id,
        subject_id=user.id,
        client_id=authz.client.client_id,
        scope=" ".join(authz.scopes),
    )
    params_out = flow.issue_code(authz, user, g.login_session)
    db.session.commit()
    return deliver(authz.redirect_uri, authz.response_mode, params_out)
