"""OpenID Connect RP-Initiated Logout 1.0: /logout, a page for people (errors as pages)."""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm

from identity import audit
from identity.extensions import csrf, db
from identity.oauth.authorization_server import server
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.sessions import current_user, sign_out

bp = serves(
    Blueprint("logout", __name__),
    "protocol",
    "RP-initiated logout ends the browser's own session, for a validated id_token_hint",
)


class LogoutForm(FlaskForm):
    pass


def _logged_out_page() -> ResponseReturnValue:
    return render_template("oauth/logged_out.html")


def _end_browser_session() -> None:
    user = current_user()
    if user is not None:
        audit.record(
            db.session(), "user.sign_out", actor_id=user.id, subject_id=user.id, via="end_session"
        )
    sign_out()


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt  # relying parties send their users here; without a valid hint we confirm first
def end_session() -> ResponseReturnValue:
    """OpenID Connect RP-Initiated Logout 1.0 sections 2-4."""
    data = request.values
    hint = data.get("id_token_hint")
    client_id = data.get("client_id")
    redirect_to = data.get("post_logout_redirect_uri")
    claims = None
    if hint:
        claims = runtime().tokens.verify_jwt(db.session(), hint, typ="JWT", check_exp=False)
        if claims is None:
            # Section 4: on errors the OP must not redirect (OIDC-62, OIDC-69).
            return render_template(
                "oauth/error.html", message="The logout request carries an invalid ID token."
            ), 400
    client = (
        server().query_client(client_id or (claims or {}).get("aud"))
        if (client_id or claims)
        else None
    )
    if client_id and claims is not None and claims.get("aud") != client_id:
        return render_template(
            "oauth/error.html", message="The logout request names two different applications."
        ), 400
    if redirect_to and (
        client is None or claims is None or not client.check_post_logout_redirect_uri(redirect_to)
    ):
        # Never to an unregistered address, and never without proof the client asked.
        redirect_to = None
    user = current_user()
    same_user = claims is not None and user is not None and claims.get("sub") == str(user.id)
    if user is not None and not same_user:
        # No proof the signed-in user's own client asked (TOK-17): confirm first.
        return render_template("oauth/logout_confirm.html", form=LogoutForm(), client=client)
    _end_browser_session()
    if redirect_to:
        state = data.get("state")
        return redirect(
            add_params_to_uri(redirect_to, [("state", state)]) if state else redirect_to
        )
    return _logged_out_page()


@bp.post("/logout/confirm")
def end_session_confirmed() -> ResponseReturnValue:
    form = LogoutForm()
    if not form.validate_on_submit():
        return redirect(url_for("logout.end_session"))
    _end_browser_session()
    return _logged_out_page()
