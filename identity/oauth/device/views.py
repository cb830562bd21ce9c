"""RFC 8628 user interaction: the signed-in user enters the code shown on the device and
approves or denies the request."""

from __future__ import annotations

from flask import Blueprint, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from identity.extensions import db, limit
from identity.oauth.device import service as device
from identity.oauth.scopes import describe
from identity.oauth.token.endpoints import normalize_user_code
from identity.rbac.access import serves
from identity.sessions import current_user, login_required

bp = serves(Blueprint("device", __name__), "protocol", "the signed-in user approves a device code")


class UserCodeForm(FlaskForm):
    user_code = StringField(
        "Code shown on your device", validators=[DataRequired(), Length(max=20)]
    )


@bp.route("/device", methods=["GET", "POST"])
@login_required
@limit("10/minute", methods=["POST"])  # user codes are short: slow down guessing
def enter_code() -> ResponseReturnValue:
    form = UserCodeForm()
    if request.method == "GET":
        form.user_code.data = normalize_user_code(request.args.get("user_code", ""))
        return render_template("oauth/device_code.html", form=form)
    if not form.validate_on_submit():
        return render_template("oauth/device_code.html", form=form), 400
    row = device.pending_authorization(db.session(), form.user_code.data or "")
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
@limit("10/minute")
def confirm() -> ResponseReturnValue:
    form = UserCodeForm()
    if not form.validate_on_submit():
        return render_template("oauth/device_code.html", form=form), 400
    row = device.pending_authorization(db.session(), form.user_code.data or "")
    if row is None:
        error = "That code is not valid or has expired. Check the code on your device."
        return render_template("oauth/device_code.html", form=form, error=error), 400
    user = current_user()
    login = g.login_session
    assert user is not None and login is not None
    approved = request.form.get("decision") == "allow"
    device.decide(db.session(), row, user, login, approved)
    return render_template("oauth/device_done.html", approved=approved)
