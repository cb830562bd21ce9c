"""Account pages: thin views that parse a form, call the service and render."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from identity import audit
from identity.accounts.forms import (
    ChangePasswordForm,
    ConfirmForm,
    EmailForm,
    RegisterForm,
    ResetPasswordForm,
    SignInForm,
)
from identity.accounts.service import Accounts
from identity.errors import InvalidInput
from identity.extensions import db, limiter
from identity.runtime import runtime
from identity.security import safe_next
from identity.sessions import current_user, login_required, sign_in, sign_out

bp = Blueprint("accounts", __name__)

SIGN_IN_FAILED = (
    "The email or password is not correct, or the email address has not been verified yet."
)


def accounts() -> Accounts:
    return Accounts(db.session, runtime())


def see_other(endpoint: str, **values: object) -> Response:
    """303 after a POST, never 307/308 which would replay the form (BCP-42)."""
    return see_other_url(url_for(endpoint, **values))


def see_other_url(location: str) -> Response:
    return redirect(location, code=303)


def is_read() -> bool:
    """GET or HEAD. Flask sends HEAD to the GET branch's view too; testing only for "GET"
    treated a HEAD (mail scanners send them) as a failed POST and answered 400."""
    return request.method in ("GET", "HEAD")


def _limit(setting: str):  # type: ignore[no-untyped-def]
    return limiter.limit(lambda: getattr(runtime().settings, setting), methods=["POST"])


def device_cookie_name() -> str:
    return ("__Host-" if runtime().settings.issuer_is_https else "") + "identity_device"


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("accounts.account" if current_user() else "accounts.sign_in"))


@bp.route("/sign-in", methods=["GET", "POST"], endpoint="sign_in")
@_limit("ratelimit_sign_in")
def sign_in_page() -> ResponseReturnValue:
    form = SignInForm()
    if is_read():
        form.next.data = request.args.get("next", "")
        form.email.data = request.args.get("login_hint", "")[:320]
        # force=1: the authorization endpoint asks for a fresh sign-in (prompt=login, max_age).
        if current_user() is not None and request.args.get("force") != "1":
            return redirect(safe_next(form.next.data, url_for("accounts.account")))
    if not form.validate_on_submit():
        return render_template("accounts/sign_in.html", form=form), 400 if form.errors else 200

    result = accounts().sign_in(
        form.email.data or "", form.password.data or "", request.cookies.get(device_cookie_name())
    )
    if result.user is None:
        db.session.commit()  # the failure is audited and counted
        if result.reason == "throttled":
            wait = result.retry_after
            message = (
                f"Too many failed attempts. Try again in {wait} second{'s' if wait != 1 else ''}."
            )
            page = render_template("accounts/sign_in.html", form=form, error=message)
            return page, 429, {"Retry-After": str(result.retry_after)}
        return render_template("accounts/sign_in.html", form=form, error=SIGN_IN_FAILED), 200

    sign_in(result.user, amr=["pwd"])
    db.session.commit()
    response = see_other_url(safe_next(form.next.data, url_for("accounts.account")))
    settings = runtime().settings
    response.set_cookie(
        device_cookie_name(),
        runtime().device_cookie.issue(result.user.email),
        max_age=180 * 86400,
        secure=settings.issuer_is_https,
        httponly=True,
        samesite="Lax",
    )
    return response


@bp.route("/sign-out", methods=["GET", "POST"], endpoint="sign_out")
def sign_out_page() -> ResponseReturnValue:
    form = ConfirmForm()
    if is_read():
        if current_user() is None:
            return redirect(url_for("accounts.sign_in"))
        return render_template("accounts/sign_out.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    user = current_user()
    if user is not None:
        audit.record(db.session, "user.sign_out", actor_id=user.id, subject_id=user.id)
    sign_out()
    db.session.commit()
    flash("You are signed out.", "info")
    return see_other("accounts.sign_in")


@bp.route("/register", methods=["GET", "POST"])
@_limit("ratelimit_registration")
def register() -> ResponseReturnValue:
    settings = runtime().settings
    if settings.registration == "closed":
        return render_template("accounts/registration_closed.html"), 403
    form = RegisterForm()
    invite = request.args.get("invite") if is_read() else form.invite.data
    if settings.registration == "invite" and accounts().find_invitation(invite) is None:
        return render_template("accounts/registration_closed.html", invite_only=True), 403
    if is_read():
        form.invite.data = invite or ""
    if not form.validate_on_submit():
        return render_template("accounts/register.html", form=form), 400 if form.errors else 200
    try:
        accounts().register(form.email.data or "", form.password.data or "", form.name.data, invite)
    except InvalidInput as error:
        db.session.rollback()
        return render_template("accounts/register.html", form=form, error=error.message), 400
    db.session.commit()
    return see_other("accounts.register_sent")


@bp.get("/register/sent")
def register_sent() -> ResponseReturnValue:
    return render_template("accounts/check_inbox.html", reason="register")


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
@_limit("ratelimit_mail")
def verify_email(token: str) -> ResponseReturnValue:
    # A GET only shows a button: mail scanners that prefetch links must not use them up.
    form = ConfirmForm()
    if is_read():
        return render_template("accounts/verify_email.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    try:
        accounts().verify_email(token)
    except InvalidInput as error:
        db.session.rollback()
        return render_template("accounts/link_invalid.html", message=error.message), 400
    db.session.commit()
    flash("Your email address is verified. You can sign in now.", "success")
    return see_other("accounts.sign_in")


@bp.route("/verify-email/resend", methods=["GET", "POST"])
@_limit("ratelimit_mail")
def resend_verification() -> ResponseReturnValue:
    form = EmailForm()
    if not form.validate_on_submit():
        page = render_template("accounts/resend_verification.html", form=form)
        return page, 400 if form.errors else 200
    accounts().resend_verification(form.email.data or "")
    db.session.commit()
    return see_other("accounts.verification_sent")


@bp.get("/verify-email/sent")
def verification_sent() -> ResponseReturnValue:
    return render_template("accounts/check_inbox.html", reason="verify")


@bp.route("/forgot-password", methods=["GET", "POST"])
@_limit("ratelimit_mail")
def forgot_password() -> ResponseReturnValue:
    form = EmailForm()
    if not form.validate_on_submit():
        page = render_template("accounts/forgot_password.html", form=form)
        return page, 400 if form.errors else 200
    accounts().request_reset(form.email.data or "")
    db.session.commit()
    return see_other("accounts.reset_sent")


@bp.get("/forgot-password/sent")
def reset_sent() -> ResponseReturnValue:
    return render_template("accounts/check_inbox.html", reason="reset")


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@_limit("ratelimit_mail")
def reset_password(token: str) -> ResponseReturnValue:
    service = accounts()
    try:
        service.check_reset_link(token)
    except InvalidInput as error:
        return render_template("accounts/link_invalid.html", message=error.message), 400
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        page = render_template("accounts/reset_password.html", form=form)
        return page, 400 if form.errors else 200
    try:
        service.reset_password(token, form.password.data or "")
    except InvalidInput as error:
        db.session.rollback()
        page = render_template("accounts/reset_password.html", form=form, error=error.message)
        return page, 400
    sign_out()  # whoever was signed in here, the new password is used from a fresh sign-in
    db.session.commit()
    flash("Your password has been changed. Sign in with the new password.", "success")
    return see_other("accounts.sign_in")


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return render_template(
        "accounts/account.html", user=current_user(), login_session=g.login_session
    )


@bp.route("/account/password", methods=["GET", "POST"])
# Each POST checks the current password: without a limit, a hijacked session could guess
# it at full speed (AUTH-02). It is a password attempt, so the sign-in limit applies.
@_limit("ratelimit_sign_in")
@login_required
def change_password() -> ResponseReturnValue:
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        page = render_template("accounts/change_password.html", form=form)
        return page, 400 if form.errors else 200
    user = current_user()
    assert user is not None
    try:
        accounts().change_password(
            user,
            form.current_password.data or "",
            form.new_password.data or "",
            keep_session=g.login_session.id_hash,
        )
    except InvalidInput as error:
        db.session.commit()  # nothing changed but the audit record of the failure
        page = render_template("accounts/change_password.html", form=form, error=error.message)
        return page, 400
    db.session.commit()
    flash("Your password has been changed. Your other sessions were signed out.", "success")
    return see_other("accounts.account")
