"""Account pages: thin views that parse a form, call the service and render."""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from identity import audit
from identity.accounts.factors import continue_sign_in
from identity.accounts.forms import (
    ChangeEmailForm,
    ChangePasswordForm,
    ConfirmForm,
    EmailForm,
    NameForm,
    RegisterForm,
    ResetPasswordForm,
    SignInForm,
)
from identity.accounts.pages import is_read, limit_failures, see_other, see_other_url
from identity.accounts.service import Accounts
from identity.errors import InvalidInput
from identity.extensions import db, limit
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import client_ip, safe_next
from identity.sessions import current_user, login_required, sign_in, sign_out

bp = serves(
    Blueprint("accounts", __name__),
    "self",
    "sign-in, registration and the signed-in user's own account pages",
)

SIGN_IN_FAILED = (
    "The email or password is not correct, or the email address has not been verified yet."
)


def accounts() -> Accounts:
    return Accounts(db.session(), runtime())


def _limit(setting: str):  # type: ignore[no-untyped-def]
    return limit(lambda: getattr(runtime().settings, setting), methods=["POST"])


@bp.app_template_filter("email_breaks")
def email_breaks(address: str) -> Markup:
    """An email address that may wrap only before its ``@`` and its dots: each part is a
    ``<span>`` the style sheet keeps on one line (no break after a hyphen, no "alic-e"),
    with ``<wbr>`` between the parts."""
    parts = re.split(r"(?=[@.])", address)
    return Markup("<wbr>").join(Markup("<span>%s</span>") % part for part in parts if part)


def breakable(address: str) -> Markup:
    """An address for a sentence (a notice, a page): marked up to wrap like on the account
    page."""
    return Markup('<strong class="email">{}</strong>').format(email_breaks(address))


def device_cookie_name() -> str:
    return ("__Host-" if runtime().settings.issuer_is_https else "") + "identity_device"


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("accounts.account" if current_user() else "accounts.sign_in"))


@bp.route("/sign-in", methods=["GET", "POST"], endpoint="sign_in")
@limit_failures("ratelimit_sign_in")
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
        form.email.data or "",
        form.password.data or "",
        request.cookies.get(device_cookie_name()),
        user_agent=request.user_agent.string,
        ip=client_ip(),
    )
    if result.user is None:
        if result.reason == "throttled":
            wait = result.retry_after
            message = (
                f"Too many failed attempts. Try again in {wait} second{'s' if wait != 1 else ''}."
            )
            page = render_template("accounts/sign_in.html", form=form, error=message)
            return page, 429, {"Retry-After": str(result.retry_after)}
        return render_template("accounts/sign_in.html", form=form, error=SIGN_IN_FAILED), 200

    next_url = safe_next(form.next.data, url_for("accounts.account"))
    response = continue_sign_in(result.user, ["pwd"], next_url)
    if response is None:  # no second factor to ask for: signed in
        sign_in(result.user, amr=["pwd"])
        response = see_other_url(next_url)
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
        audit.record(db.session(), "user.sign_out", actor_id=user.id, subject_id=user.id)
    sign_out()
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
    return see_other("accounts.register_sent")


@bp.get("/register/sent")
def register_sent() -> ResponseReturnValue:
    return render_template("accounts/check_inbox.html", reason="register")


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
@_limit("ratelimit_mail")
def verify_email(token: str) -> ResponseReturnValue:
    service = accounts()
    try:
        usable = service.check_verification_link(token)
    except InvalidInput as error:
        return render_template("accounts/link_invalid.html", message=error.message), 400
    if not usable:
        message = "This link has been used: the email address is verified."
        return render_template("accounts/link_used.html", message=message)
    # A GET only shows a button: mail scanners that prefetch links must not use them up.
    form = ConfirmForm()
    if is_read():
        return render_template("accounts/verify_email.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    try:
        service.verify_email(token)
    except InvalidInput as error:
        db.session.rollback()
        return render_template("accounts/link_invalid.html", message=error.message), 400
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
    flash("Your password has been changed. Sign in with the new password.", "success")
    return see_other("accounts.sign_in")


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return render_template(
        "accounts/account.html", user=current_user(), login_session=g.login_session
    )


@bp.route("/account/name", methods=["GET", "POST"])
@login_required
def change_name() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = NameForm()
    if is_read():
        form.name.data = user.name or ""
    if not form.validate_on_submit():
        page = render_template("accounts/change_name.html", form=form)
        return page, 400 if form.errors else 200
    if accounts().change_name(user, form.name.data):
        flash(
            "Your name has been changed." if user.name else "Your name has been removed.", "success"
        )
    return see_other("accounts.account")


@bp.route("/account/email", methods=["GET", "POST"])
# The form checks the current password (so the sign-in limit on failures applies) and mails
# any address it is given (so the mail limit applies to every request).
@limit_failures("ratelimit_sign_in")
@_limit("ratelimit_mail")
@login_required
def change_email() -> ResponseReturnValue:
    form = ChangeEmailForm()
    if not form.validate_on_submit():
        page = render_template("accounts/change_email.html", form=form)
        return page, 400 if form.errors else 200
    user = current_user()
    assert user is not None
    try:
        new_email = accounts().request_email_change(
            user, form.current_password.data or "", form.new_email.data or ""
        )
    except InvalidInput as error:
        page = render_template("accounts/change_email.html", form=form, error=error.message)
        return page, 400
    # The same answer whether or not another account has the address.
    flash(
        Markup(
            "If {} can be used, a link to confirm it is on its way there. Your email address "
            "changes when you open that link; until then, sign in with {}."
        ).format(breakable(new_email), breakable(user.email)),
        "info",
    )
    return see_other("accounts.account")


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
@_limit("ratelimit_mail")
@login_required
def confirm_email_change(token: str) -> ResponseReturnValue:
    # Only the account's own signed-in browser can confirm: a link that reached a mistyped
    # address does not give that mailbox's owner the account.
    user = current_user()
    assert user is not None
    service = accounts()
    try:
        new_email, usable = service.check_email_change_link(user, token)
    except InvalidInput as error:
        return render_template("accounts/link_invalid.html", message=error.message), 400
    if not usable:
        message = Markup("This link has been used: your email address is {}.").format(
            breakable(new_email)
        )
        return render_template("accounts/link_used.html", message=message)
    form = ConfirmForm()
    if is_read():  # a button, as for verification: prefetching scanners change nothing
        return render_template("accounts/confirm_email.html", form=form, new_email=new_email)
    if not form.validate_on_submit():
        abort(400)
    try:
        service.confirm_email_change(user, token)
    except InvalidInput as error:
        db.session.rollback()
        return render_template("accounts/link_invalid.html", message=error.message), 400
    flash(
        Markup("Your email address is now {}. Sign in with it from now on.").format(
            breakable(new_email)
        ),
        "success",
    )
    return see_other("accounts.account")


@bp.route("/account/password", methods=["GET", "POST"])
# Each POST checks the current password: without a limit, a hijacked session could guess
# it at full speed (AUTH-02). It is a password attempt, so the sign-in limit applies.
@limit_failures("ratelimit_sign_in")
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
        page = render_template("accounts/change_password.html", form=form, error=error.message)
        return page, 400
    flash("Your password has been changed. Your other sessions were signed out.", "success")
    return see_other("accounts.account")
