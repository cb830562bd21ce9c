"""The user's "connected apps" page: what each app may see, and withdrawing access."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import DataRequired, Length

from identity.extensions import db
from identity.oauth.consents.service import connected_apps, withdraw
from identity.oauth.scopes import describe
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.sessions import current_user, login_required

bp = serves(Blueprint("apps", __name__), "self", "the signed-in user's own connected apps")


class WithdrawForm(FlaskForm):
    client_id = HiddenField(validators=[DataRequired(), Length(max=64)])


@bp.get("/account/apps")
@login_required
def list_apps() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    apps = [(app, describe(app.scopes)) for app in connected_apps(db.session(), user.id)]
    return render_template("oauth/apps.html", apps=apps, form=WithdrawForm())


@bp.post("/account/apps/withdraw")
@login_required
def withdraw_app() -> ResponseReturnValue:
    form = WithdrawForm()
    user = current_user()
    assert user is not None
    if form.validate_on_submit() and withdraw(
        db.session(), user.id, form.client_id.data or "", runtime().settings.access_token_lifetime
    ):
        flash("Access withdrawn. The app was signed out and must ask again.", "success")
    else:
        flash("That app has no access to withdraw.", "error")
    return redirect(url_for("apps.list_apps"), code=303)
