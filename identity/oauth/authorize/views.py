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
from werkzeug.wrappers import Response as BaseResponse
from wtforms import HiddenField

from identity import audit
from identity.extensions import csrf, db, limit
from identity.oauth.authorization_server import server
from identity.oauth.authorize import flow
from identity.oauth.authorize.flow import ErrorPage
from identity.oauth.scopes import describe
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import allow_form_target, csp_source
from identity.sessions import current_user

bp = serves(
    Blueprint("oauth", __name__),
    "protocol",
    "authorization requests act for the signed-in user, with their consent",
)
# Answers to silent (prompt=none) requests, which RFC 9700 4.11.2 lets through unprompted.
SILENT_ERRORS = (LoginRequiredError, ConsentRequiredError)
RESUME_PREFIX = "/authorize/resume/"


class ConsentForm(FlaskForm):
    request_id = HiddenField()


def error_page(message: str) -> ResponseReturnValue:
    return render_template("oauth/error.html", message=message), 400


def deliver(redirect_uri: str, response_mode: str, params: list[tuple[str, str]]) -> BaseResponse:
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
        f"form-action {csp_source(redirect_uri)}; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def redirect_error(error: OAuth2Error) -> BaseResponse:
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
        decision = flow.decide(db.session(), authz, g.login_session, login_after=login_after)
    except ErrorPage as error:
        return error_page(error.message)
    except OAuth2Error as error:
        if getattr(error, "redirect_uri", None) is None:
            return error_page(error.description or error.error)
        return answer_error(error, params, pending_token)

    if decision.action in ("login", "step_up", "consent"):
        token = pending_token or keep_pending(flow.save_pending(db.session(), authz))
        if decision.action == "login":
            return sign_in_first(token, authz.params.get("login_hint", ""))
        if decision.action == "step_up":  # signed in, but the client asks for more
            return redirect(
                url_for(
                    "factors.step_up",
                    next=url_for("oauth.resume", request_id=token),
                    required="1" if authz.client_requires_acr else None,
                )
            )
        form = ConsentForm(request_id=token)
        allow_form_target(authz.redirect_uri)  # both answers redirect to the client
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
        db.session.delete(flow.load_pending(db.session(), pending_token))
    audit.record(
        db.session(),
        "oauth.authorize",
        actor_id=user.id,
        subject_id=user.id,
        client_id=authz.client.client_id,
        scope=authz.request.scope or "",
    )
    return deliver(authz.redirect_uri, authz.response_mode, params_out)


def keep_pending(token: str) -> str:
    """Note that this request stored a pending authorization: such requests count against
    the per-address limit (anyone can send them without signing in)."""
    g.pending_stored = True
    return token


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
        token = pending_token or keep_pending(
            flow.save_pending_params(db.session(), client, dict(params))
        )
        return sign_in_first(token, params.get("login_hint", ""))
    if pending_token:
        db.session.delete(flow.load_pending(db.session(), pending_token))
    if client.registered_via == "dynamic" and not isinstance(error, SILENT_ERRORS):
        return untrusted_error(client, error)
    return redirect_error(error)


def untrusted_error(client: Any, error: OAuth2Error) -> ResponseReturnValue:
    """RFC 9700 4.11.2: the AS SHOULD redirect automatically only to redirect URIs it
    trusts; for an unreviewed client the user is told and decides whether to go back."""
    params = flow.error_params(error)
    mode = getattr(error, "response_mode", "query")
    origin = csp_source(error.redirect_uri)
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
    if mode == "form_post":
        allow_form_target(error.redirect_uri)
    return make_response(html, 400)


# The password step (accounts) and the second step (factors) both continue to ``next``.
# The blueprints whose pages sign people in; the composition root runs the hook below
# before their requests only (identity.factory.setup_blueprints).
SIGN_IN_BLUEPRINTS = ("accounts", "factors")


def sign_in_forms_may_reach_the_client() -> None:
    """The sign-in pages carry ``next``; when it resumes an authorization request, their
    form's answer ends (through /authorize/resume) at that request's client. The page also
    names that client: ``g.sign_in_continues_to`` is its display name, which the sign-in
    template shows ("to continue to ...")."""
    target = request.args.get("next") or (
        request.form.get("next") if request.method == "POST" else None
    )
    if not target or not target.startswith(RESUME_PREFIX):
        return
    try:
        pending = flow.load_pending(db.session(), target[len(RESUME_PREFIX) :])
    except ErrorPage:
        return
    g.sign_in_continues_to = pending.client.display_name
    redirect_uri = pending.params.get("redirect_uri")
    if redirect_uri:
        allow_form_target(redirect_uri)


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # relying parties may POST the request (OIDC Core 3.1.2.1); it changes nothing
@limit(
    lambda: runtime().settings.ratelimit_authorize,
    deduct_when=lambda response: bool(g.get("pending_stored")),
)
def authorize() -> ResponseReturnValue:
    query: MultiDict[str, str] = MultiDict()
    params = query
    try:
        query = params = flow.read_params(request.method, request.args, request.form)
        params = flow.resolve_pushed_request(db.session(), params)
        params = flow.resolve_request_object(params)
    except ErrorPage as error:
        return error_page(error.message)
    except OAuth2Error as error:  # an invalid request object
        if g.login_session is None:
            # Not kept for after sign-in (it would be read again without its object).
            return error_page(error.description or error.error)
        return answer_error(error, query, None)
    return run(params, request.method)


@bp.get("/authorize/resume/<request_id>")
def resume(request_id: str) -> ResponseReturnValue:
    """Back from sign-in: continue the stored request; a forced login counts as fresh when
    it happened after the request arrived (prompt=login, max_age)."""
    try:
        pending = flow.load_pending(db.session(), request_id)
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
        pending = flow.load_pending(db.session(), form.request_id.data or "")
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
            db.session(),
            "oauth.consent",
            outcome="failure",
            actor_id=user.id,
            subject_id=user.id,
            client_id=authz.client.client_id,
            reason="denied",
        )
        denied = AccessDeniedError()
        flow.redirectable(denied, authz.redirect_uri, authz.response_mode, authz.state)
        return redirect_error(denied)
    flow.remember_consent(db.session(), user, authz.client, authz.scopes)
    audit.record(
        db.session(),
        "oauth.consent",
        actor_id=user.id,
        subject_id=user.id,
        client_id=authz.client.client_id,
        scope=" ".join(authz.scopes),
    )
    params_out = flow.issue_code(authz, user, g.login_session)
    return deliver(authz.redirect_uri, authz.response_mode, params_out)
