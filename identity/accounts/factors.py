"""Second factors: the second step of a sign-in, and the user's security page.

/sign-in/second-factor          the code from the authenticator app
/sign-in/recovery-code          or one of the recovery codes
/sign-in/set-up-authenticator   a user whom policy requires a factor, without one yet
/sign-in/step-up                a client asks two factors of a password-only session
/account/security               the user's factors; set up, remove, new recovery codes
"""

from __future__ import annotations

import segno
from flask import (
    Blueprint,
    Response,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

from identity.accounts.forms import (
    CodeForm,
    ConfirmForm,
    EnrolTotpForm,
    PasswordConfirmForm,
    RecoveryCodeForm,
)
from identity.accounts.pages import is_read, limit_failures, see_other
from identity.auth import pending
from identity.auth.methods import RECOVERY_CODE, TOTP
from identity.auth.service import Factors, PolicyRefusal
from identity.auth.totp import Outcome
from identity.extensions import db
from identity.models.mfa import PendingAuthentication
from identity.models.user import User
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import safe_next
from identity.sessions import current_user, login_required, sign_in

bp = serves(
    Blueprint("factors", __name__),
    "self",
    "the second step of the user's own sign-in and their own security page",
)

TRY_AGAIN = "That code is not right, or it was already used. Try the newest code."


def factors() -> Factors:
    return Factors(db.session(), runtime())


def pending_cookie_name() -> str:
    return ("__Host-" if runtime().settings.issuer_is_https else "") + "identity_pending"


# Handing over from the password step --------------------------------------------------


def continue_sign_in(
    user: User, amr: list[str], next_url: str, *, required: bool = False
) -> BaseResponse | None:
    """After the password: the response that leads to the second step, or None when the
    user has no second factor and needs none (the caller signs them in). ``required``: a
    client's policy asks for one (the user sets one up if they have none)."""
    service = factors()
    if service.has_second_factor(user):
        endpoint = "factors.second_factor"
    elif required or service.required_for(user):
        endpoint = "factors.set_up"
    else:
        return None
    token = pending.start(db.session(), user, amr, next_url)
    # ``next`` rides along only for the CSP of the page (identity.oauth.authorize.views);
    # where the sign-in goes is the record's.
    response = see_other(endpoint, next=next_url)
    set_pending_cookie(response, token)
    return response


def set_pending_cookie(response: Response | BaseResponse, token: str) -> None:
    response.set_cookie(
        pending_cookie_name(),
        token,
        max_age=int(pending.LIFETIME.total_seconds()),
        path="/",
        secure=runtime().settings.issuer_is_https,
        httponly=True,
        samesite="Lax",
    )


def _pending() -> PendingAuthentication | None:
    return pending.load(db.session(), request.cookies.get(pending_cookie_name()))


def _start_over() -> BaseResponse:
    flash("Your sign-in has expired or was interrupted. Sign in again.", "info")
    response = see_other("accounts.sign_in")
    _clear_pending_cookie(response)
    return response


def _clear_pending_cookie(response: Response | BaseResponse) -> None:
    response.delete_cookie(
        pending_cookie_name(), path="/", secure=runtime().settings.issuer_is_https, httponly=True
    )


def complete(record: PendingAuthentication, user: User, amr: list[str]) -> str:
    """Every step done: the login session starts now. Returns where the browser goes."""
    next_url = record.next_url or url_for("accounts.account")
    pending.finish(db.session(), record)
    sign_in(user, amr=[*record.amr, *amr])  # the session cookie goes with the answer
    return next_url


def _finish(record: PendingAuthentication, user: User, method_amr: str) -> BaseResponse:
    response = redirect(complete(record, user, [method_amr]), code=303)
    _clear_pending_cookie(response)
    return response


def _user_of(record: PendingAuthentication) -> User | None:
    user = db.session.get(User, record.user_id)
    return user if user is not None and user.is_active else None


# The second step ---------------------------------------------------------------------


@bp.route("/sign-in/second-factor", methods=["GET", "POST"], endpoint="second_factor")
@limit_failures("ratelimit_sign_in")
def second_factor() -> ResponseReturnValue:
    record = _pending()
    user = _user_of(record) if record is not None else None
    if record is None or user is None:
        return _start_over()
    form = CodeForm()
    if is_read():
        form.next.data = record.next_url
    service = factors()
    methods = {"has_totp": service.has_totp(user), "has_passkey": service.has_passkey(user)}
    if not form.validate_on_submit():
        page = render_template("accounts/second_factor.html", form=form, **methods)
        return page, 400 if form.errors else 200
    check = service.verify_totp(record, user, form.code.data or "")
    if check.outcome == Outcome.OK:
        return _finish(record, user, TOTP.amr)
    if check.outcome == Outcome.THROTTLED:
        wait = check.retry_after
        message = f"Too many wrong codes. Try again in {wait} second{'s' if wait != 1 else ''}."
        page = render_template("accounts/second_factor.html", form=form, error=message, **methods)
        return page, 429, {"Retry-After": str(wait)}
    if not pending.failed_attempt(db.session(), record):
        return _start_over()
    page = render_template("accounts/second_factor.html", form=form, error=TRY_AGAIN, **methods)
    return page, 400


@bp.route("/sign-in/recovery-code", methods=["GET", "POST"], endpoint="recovery_code")
@limit_failures("ratelimit_sign_in")
def recovery_code() -> ResponseReturnValue:
    record = _pending()
    user = _user_of(record) if record is not None else None
    if record is None or user is None or not factors().has_totp(user):
        return _start_over()
    form = RecoveryCodeForm()
    if is_read():
        form.next.data = record.next_url
    if not form.validate_on_submit():
        page = render_template("accounts/recovery_code.html", form=form)
        return page, 400 if form.errors else 200
    if factors().use_recovery_code(record, user, form.code.data or ""):
        flash(
            "You signed in with a recovery code, which is now used up. If you lost your "
            "authenticator app, set up a new one and print new recovery codes.",
            "info",
        )
        return _finish(record, user, RECOVERY_CODE.amr)
    if not pending.failed_attempt(db.session(), record):
        return _start_over()
    error = "That recovery code is not right, or it was already used."
    return render_template("accounts/recovery_code.html", form=form, error=error), 400


@bp.route("/sign-in/set-up-authenticator", methods=["GET", "POST"], endpoint="set_up")
@limit_failures("ratelimit_sign_in")
def set_up() -> ResponseReturnValue:
    """Policy requires a second factor and the user has none: set one up to finish."""
    record = _pending()
    user = _user_of(record) if record is not None else None
    if record is None or user is None or factors().has_second_factor(user):
        return _start_over()
    return _enrol(user, during_sign_in=record)


@bp.get("/sign-in/step-up", endpoint="step_up")
@login_required
def step_up() -> ResponseReturnValue:
    """A client asked for more than this session's sign-in reached (acr_values): the
    second factor now, for the user already signed in. The session carries on (same
    ``sid``) with both steps in its ``amr``."""
    user = current_user()
    assert user is not None
    next_url = safe_next(request.args.get("next"), url_for("accounts.account"))
    required = request.args.get("required") == "1"  # the client's policy, not a wish
    follow = continue_sign_in(user, list(g.login_session.amr), next_url, required=required)
    return follow or redirect(next_url)


# The security page -----------------------------------------------------------------


@bp.get("/account/security")
@login_required
def security() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    return render_template(
        "accounts/security.html",
        overview=factors().overview(user),
        login_session=g.login_session,
        form=ConfirmForm(),
    )


@bp.route("/account/security/authenticator", methods=["GET", "POST"], endpoint="enrol_totp")
@login_required
@limit_failures("ratelimit_sign_in")
def enrol_totp() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    if factors().has_second_factor(user):
        flash("An authenticator app is already set up. Remove it first to set up another.")
        return see_other("factors.security")
    return _enrol(user)


def _enrol(user: User, during_sign_in: PendingAuthentication | None = None) -> ResponseReturnValue:
    service = factors()
    enrolment = service.begin_totp(user)
    form = EnrolTotpForm()
    qr = segno.make(enrolment.uri, error="m")
    page = {
        "form": form,
        "secret": " ".join(enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4)),
        "qr_svg": qr.svg_inline(scale=5, light="#fff", title="QR code for your authenticator app"),
        "during_sign_in": during_sign_in is not None,
    }
    if not form.validate_on_submit():
        return render_template("accounts/enrol_totp.html", **page), 400 if form.errors else 200
    codes = service.confirm_totp(user, form.code.data or "")
    if codes is None:
        error = "That code is not right. Check the app shows this account, and try the newest code."
        return render_template("accounts/enrol_totp.html", **page, error=error), 400
    if during_sign_in is None:
        return render_template("accounts/recovery_codes.html", codes=codes, next_url=None)
    # Signed in now; the codes page comes first and links on to where the sign-in was going.
    next_url = complete(during_sign_in, user, [TOTP.amr])
    response = make_response(
        render_template("accounts/recovery_codes.html", codes=codes, next_url=next_url)
    )
    _clear_pending_cookie(response)
    return response


@bp.post("/account/security/authenticator/remove")
@login_required
@limit_failures("ratelimit_sign_in")
def remove_totp() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = PasswordConfirmForm()
    if not form.validate_on_submit() or not factors().password_is(
        user, form.current_password.data or ""
    ):
        flash("The password is not correct: the authenticator app stays.", "error")
        return see_other("factors.security")
    try:
        factors().remove_totp(user)
    except PolicyRefusal as refusal:
        flash(str(refusal), "error")
        return see_other("factors.security")
    flash("The authenticator app and your recovery codes are removed.", "success")
    return see_other("factors.security")


@bp.post("/account/security/recovery-codes")
@login_required
@limit_failures("ratelimit_sign_in")
def new_recovery_codes() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = PasswordConfirmForm()
    if not form.validate_on_submit() or not factors().password_is(
        user, form.current_password.data or ""
    ):
        flash("The password is not correct: your recovery codes stay as they were.", "error")
        return see_other("factors.security")
    codes = factors().regenerate_recovery_codes(user)
    if codes is None:
        return see_other("factors.security")
    return render_template("accounts/recovery_codes.html", codes=codes, next_url=None)
