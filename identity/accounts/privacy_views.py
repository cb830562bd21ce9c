"""The person's privacy pages: download their data, delete their account.

/account/privacy                       what there is, and the two buttons
/account/privacy/export                (POST) ask for a copy of one's data
/account/privacy/download/<token>      the mailed single-use link: a page, then the ZIP
/account/delete                        (POST) ask for the account's erasure
/account/delete/cancel/<token>         the mailed link that calls the erasure off

Both requests are confirmed with the current password (a fresh proof that the person is
there, as for removing a second factor); they are CSRF-protected like every form.
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, render_template, request
from flask.typing import ResponseReturnValue

from identity.accounts.forms import ConfirmForm, PasswordConfirmForm
from identity.accounts.pages import limit_failures, see_other
from identity.auth.service import Factors
from identity.exceptions import Conflict
from identity.extensions import db
from identity.links import LinkError
from identity.models.base import utcnow
from identity.models.privacy import EXPORT, PrivacyJob
from identity.privacy import jobs
from identity.privacy.erasure import Erasure
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.sessions import current_user, login_required, sign_out

bp = serves(
    Blueprint("privacy", __name__),
    "self",
    "the person's own data export and account deletion",
)


def _password_confirmed(form: PasswordConfirmForm) -> bool:
    user = current_user()
    assert user is not None
    service = Factors(db.session(), runtime())
    return form.validate_on_submit() and service.password_is(user, form.current_password.data or "")


@bp.get("/account/privacy")
@login_required
def privacy() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    session = db.session()
    exports = list(
        session.query(PrivacyJob)
        .filter(PrivacyJob.user_id == user.id, PrivacyJob.kind == EXPORT)
        .order_by(PrivacyJob.created_at.desc())
    )
    return render_template(
        "accounts/privacy.html",
        form=PasswordConfirmForm(),
        exports=exports,
        now=utcnow(),
        link_hours=runtime().settings.gdpr_export_link_hours,
        cooling_off_days=runtime().settings.gdpr_cooling_off_days,
    )


@bp.post("/account/privacy/export")
@login_required
@limit_failures("ratelimit_sign_in")
def request_export() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    if not _password_confirmed(PasswordConfirmForm()):
        flash("The password is not correct: nothing was exported.", "error")
        return see_other("privacy.privacy")
    jobs.request_export(db.session(), user)
    flash("Your data is being gathered. We will mail you a download link shortly.", "success")
    return see_other("privacy.privacy")


@bp.route("/account/privacy/download/<token>", methods=["GET", "POST"])
@login_required
def download(token: str) -> ResponseReturnValue:
    """GET shows a button (mail scanners must not use up the single-use link); POST
    hands over the ZIP and ends the link."""
    user = current_user()
    assert user is not None
    session = db.session()
    try:
        job = jobs.ready_export(session, token, user)
    except jobs.ExportGone as gone:
        return render_template("accounts/privacy_gone.html", message=gone.message), 404
    form = ConfirmForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("accounts/privacy_download.html", form=form, job=job)
    data = jobs.take_export(session, runtime(), token, user)
    name = f"identity-export-{job.created_at:%Y%m%d}.zip"
    return Response(
        data,
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.post("/account/delete")
@login_required
@limit_failures("ratelimit_sign_in")
def delete_account() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    if not _password_confirmed(PasswordConfirmForm()):
        flash("The password is not correct: your account stays.", "error")
        return see_other("privacy.privacy")
    try:
        job = Erasure(db.session(), runtime()).request(user)
    except Conflict as refusal:  # the last active administrator (AUTHZ-08)
        flash(f"Your account stays: {refusal.message}.", "error")
        return see_other("privacy.privacy")
    response = see_other("accounts.sign_in")
    sign_out()
    flash(
        f"Your account is disabled and will be erased on {job.run_after:%Y-%m-%d}. "
        "The link we mailed you cancels it until then.",
        "success",
    )
    return response


@bp.route("/account/delete/cancel/<token>", methods=["GET", "POST"])
def cancel_deletion(token: str) -> ResponseReturnValue:
    """GET shows a button, POST cancels (a mail scanner must not decide)."""
    form = ConfirmForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("accounts/privacy_cancel.html", form=form)
    try:
        Erasure(db.session(), runtime()).cancel_by_link(token)
    except LinkError:
        flash("This link is no longer valid: the deletion was cancelled or done already.", "error")
        return see_other("accounts.sign_in")
    flash("Your account stays: the deletion is cancelled. You can sign in again.", "success")
    return see_other("accounts.sign_in")
