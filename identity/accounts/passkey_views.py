"""Passkeys: registering them, signing in with them, renaming and removing them.

The browser side is ``static/passkeys.js`` (WebAuthn needs script); it posts JSON here
with the page's CSRF token in ``X-CSRFToken``. Answers are JSON: ``{"redirect": URL}`` or
``{"error": message}``.

POST /account/passkeys/options      options for navigator.credentials.create()
POST /account/passkeys              the new credential: checked and kept
POST /account/passkeys/<id>/rename  a new name (form)
POST /account/passkeys/<id>/remove  remove it, with the password (form)
POST /sign-in/passkey/options       options for navigator.credentials.get(): for the
                                    second step, or a sign-in with a passkey alone
POST /sign-in/passkey               the signed answer: signs in
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from identity.accounts.factors import complete, factors, pending_cookie_name, set_pending_cookie
from identity.accounts.forms import PasswordConfirmForm, RenameForm
from identity.accounts.pages import limit_failures
from identity.auth import pending
from identity.auth.passkeys import PasskeyError
from identity.auth.service import PolicyRefusal
from identity.extensions import db, limit
from identity.models.user import User
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import safe_next
from identity.sessions import current_user, login_required

bp = serves(
    Blueprint("passkeys", __name__),
    "self",
    "the user's own passkeys, and signing in with one",
)

REGISTRATION = "passkey_registration"  # the Flask session key of a registration challenge


def _error(message: str, status: int = 400) -> ResponseReturnValue:
    return jsonify(error=message), status


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _answer(data: dict[str, Any]) -> str | None:
    """The credential, as the JSON text the webauthn package reads."""
    credential = data.get("credential")
    return json.dumps(credential) if isinstance(credential, dict) else None


# Registering -------------------------------------------------------------------------


@bp.post("/account/passkeys/options")
@login_required
def registration_options() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    challenge = runtime().passkeys.registration(db.session(), user)
    # Signed (not readable by others, not forgeable) and popped when the answer comes;
    # a replayed registration finds the credential already registered.
    session[REGISTRATION] = challenge.challenge
    return _options(challenge.options)


def _options(options: str) -> Response:
    return Response(options, mimetype="application/json")


@bp.post("/account/passkeys")
@login_required
@limit_failures("ratelimit_sign_in", failures=(HTTPStatus.BAD_REQUEST,))
def register() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    data = _body()
    challenge = session.pop(REGISTRATION, None)
    answer = _answer(data)
    if not challenge or answer is None:
        return _error("Start again: the passkey request has expired.")
    try:
        factors().add_passkey(user, answer, challenge, str(data.get("name") or ""))
    except PasskeyError as error:
        return _error(str(error))
    flash("Your passkey is registered.", "success")
    return jsonify(redirect=url_for("factors.security"))


@bp.post("/account/passkeys/<credential_pk>/rename")
@login_required
def rename(credential_pk: str) -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = RenameForm()
    credential = runtime().passkeys.find(db.session(), user, credential_pk)
    if credential is not None and form.validate_on_submit():
        runtime().passkeys.rename(credential, form.name.data or "")
        flash("The passkey is renamed.", "success")
    return redirect(url_for("factors.security"), code=303)


@bp.post("/account/passkeys/<credential_pk>/remove")
@login_required
@limit_failures("ratelimit_sign_in", failures=(HTTPStatus.BAD_REQUEST,))
def remove(credential_pk: str) -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = PasswordConfirmForm()
    credential = runtime().passkeys.find(db.session(), user, credential_pk)
    if credential is None:
        return redirect(url_for("factors.security"), code=303)
    if not form.validate_on_submit() or not factors().password_is(
        user, form.current_password.data or ""
    ):
        flash("The password is not correct: the passkey stays.", "error")
        return redirect(url_for("factors.security"), code=303)
    try:
        factors().remove_passkey(user, credential)
    except PolicyRefusal as refusal:
        flash(str(refusal), "error")
    else:
        flash("The passkey is removed.", "success")
    return redirect(url_for("factors.security"), code=303)


# Signing in ----------------------------------------------------------------------------


@bp.post("/sign-in/passkey/options")
# Every call counts (not only failures): without a pending sign-in, each one stores a
# record, and nobody needs more than a few a minute.
@limit(lambda: runtime().settings.ratelimit_sign_in, methods=["POST"])
def authentication_options() -> ResponseReturnValue:
    """With a pending sign-in (the password done): that user's passkeys. Without one: any
    passkey, and the device must verify the user (a sign-in with the passkey alone)."""
    record = pending.load(db.session(), request.cookies.get(pending_cookie_name()))
    user = db.session.get(User, record.user_id) if record and record.user_id else None
    challenge = runtime().passkeys.authentication(db.session(), user)
    response = _options(challenge.options)
    if record is not None and user is not None:
        record.challenge = challenge.challenge
    else:
        next_url = safe_next(str(_body().get("next") or ""), url_for("accounts.account"))
        token = pending.start(db.session(), None, [], next_url, challenge=challenge.challenge)
        set_pending_cookie(response, token)
    return response


@bp.post("/sign-in/passkey")
@limit_failures("ratelimit_sign_in", failures=(HTTPStatus.BAD_REQUEST,))
def sign_in_with_passkey() -> ResponseReturnValue:
    record = pending.load(db.session(), request.cookies.get(pending_cookie_name()))
    if record is None:
        return _error("Start again: the sign-in has expired.")
    challenge = pending.take_challenge(db.session(), record)
    answer = _answer(_body())
    if not challenge or answer is None:
        return _error("Start again: the sign-in has expired.")
    user = db.session.get(User, record.user_id) if record.user_id else None
    try:
        used = runtime().passkeys.authenticate(db.session(), answer, challenge, user)
    except PasskeyError as error:
        factors().audit_passkey(user, None)
        if not pending.failed_attempt(db.session(), record):
            return _error("Too many failed attempts. Sign in again.", 403)
        return _error(str(error))
    owner = user or db.session.get(User, used.credential.user_id)
    if owner is None or not owner.is_active or not owner.is_verified:
        return _error("This account cannot sign in.", 403)
    factors().audit_passkey(owner, used)
    next_url = complete(record, owner, used.amr)
    response = jsonify(redirect=next_url)
    response.delete_cookie(
        pending_cookie_name(), path="/", secure=runtime().settings.issuer_is_https, httponly=True
    )
    return response
