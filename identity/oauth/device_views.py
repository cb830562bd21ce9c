"""RFC 8628 user interaction: the signed-in user enters the code shown on the device and
approves or denies the request."""

from __future__ import annotations

from flask import Blueprint, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from identity import audit
from identity.extensions import db, limiter
from identity.models.base import utcnow
from identity.models.oauth import DeviceAuthorization
from identity.oauth.endpoints import normalize_user_code, user_code_digest
from identity.oauth.scopes import describe
from identity.sessions import current_user, login_required

bp = Blueprint("device", __name__)


class UserCodeForm(FlaskForm):
    user_code = StringField(
        "Code shown on your device", validators=[DataRequired(), Length(max=20)]
    )


def pending_authorization(user_code: str) -> DeviceAuthorization | None:
    row = db.session.execute(
        select(DeviceAuthorization).where(
            DeviceAuthorization.user_code_hash == user_code_digest(user_code)
        )
    ).scalar_one_or_none()
    if row is None or row.status != "pending" or row.expires_at <= utcnow():
        return None
    return row


@bp.route("/device", methods=["GET", "POST"])
@login_required
@limiter.limit("10/minute", methods=["POST"])  # user codes are short: slow down guessing
def enter_code() -> ResponseReturnValue:
    form = UserCodeForm()
    if request.method == "GET":
        form.user_code.data = normalize_user_code(request.args.get("user_code", ""))
        return render_template("oauth/device_code.html", form=form)
    if not form.validate_on_submit():
        return render_template("oauth/device_code.html", form=form), 400
    row = pending_authorization(form.user_code.data or "")
    if row is None:
        error = "That code is not valid or has expired. Check the code on your device."
        return render_template("oauth/device_code.html", form=form, error=error), 400
    return render_template(
        "oauth/device_confirm.html",
        form=form,
        client=row.client,
        scopes=describe(row.scope.split()),
        user_code=normalize_user_code(form.user_code.data or ""),
    )


@bp.post("/device/confirm")
@login_required
@limiter.limit("10/minute")
def confirm() -> ResponseReturnValue:
    form = UserCodeForm()
    if not form.validate_on_submit():
        return render_template("oauth/device_code.html", form=form), 400
    row = pending_authorization(form.user_code.data or "")
    if row is None:
        error = "That code is not valid or has expired. Check the code on your device."
        return render_template("oauth/device_code.html", form=form, error=error), 400
    user = current_user()
    login = g.login_session
    assert user is not None and login is not None
    approved = request.form.get("decision") == "allow"
    row.status = "approved" if approved else "denied"
    row.user_id = user.id
    row.auth_time = login.auth_time
    row.amr = list(login.amr)
    row.acr = login.acr
    audit.record(
        db.session,
        "oauth.device_authorized",
        outcome="success" if approved else "failure",
        actor_id=user.id,
        subject_id=user.id,
        client_id=row.client.client_id,
    )
    db.session.commit()
    return render_template("oauth/device_done.html", approved=approved)
