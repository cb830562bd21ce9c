"""The user's own login sessions: see each signed-in browser and end it.

/account/sessions                   every live session: browser, system, address, when
/account/sessions/<sid>/end         sign out that browser (and its apps' grants)
/account/sessions/end-others        sign out every other browser
/account/sessions/end-all           sign out everywhere, this browser too, and end every
                                    app's access, offline ones included
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from identity import audit
from identity.accounts.forms import ConfirmForm
from identity.auth.methods import ACR_TWO_FACTORS
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.session import LoginSession
from identity.rbac.access import serves
from identity.revocation import revoke_user_tokens
from identity.runtime import runtime
from identity.sessions import current_user, login_required, policy, sign_out
from identity.sessions import service as login_sessions
from identity.sessions.devices import describe

bp = serves(
    Blueprint("my_sessions", __name__),
    "self",
    "the signed-in user's own login sessions",
)


@dataclass(frozen=True)
class Row:
    sid: str
    browser: str
    system: str
    ip: str | None
    created_at: datetime
    last_seen_at: datetime
    two_factors: bool
    current: bool


def row(record: LoginSession, current: LoginSession) -> Row:
    browser, system = describe(record.user_agent)
    return Row(
        sid=record.sid,
        browser=browser,
        system=system,
        ip=record.ip,
        created_at=record.created_at,
        last_seen_at=record.last_seen_at,
        two_factors=record.acr == ACR_TWO_FACTORS,
        current=record.sid == current.sid,
    )


@bp.get("/account/sessions")
@login_required
def list_sessions() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    records = login_sessions.active_of(db.session(), user.id, policy(runtime().settings))
    rows = [row(r, g.login_session) for r in records]
    rows.sort(key=lambda r: not r.current)  # this browser first, then newest first
    return render_template("accounts/sessions.html", rows=rows, form=ConfirmForm())


@bp.post("/account/sessions/<sid>/end")
@login_required
def end_session(sid: str) -> ResponseReturnValue:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    user = current_user()
    assert user is not None
    if sid == g.login_session.sid:
        audit.record(db.session(), "user.sign_out", actor_id=user.id, subject_id=user.id)
        sign_out()
        flash("You are signed out.", "info")
        return redirect(url_for("accounts.sign_in"), code=303)
    try:
        login_sessions.revoke(
            db.session(),
            user.id,
            sid,
            access_token_lifetime=runtime().settings.access_token_lifetime,
            actor_id=user.id,
        )
    except NotFound:
        flash("That session had already ended.", "info")
    else:
        flash("That browser is signed out.", "success")
    return redirect(url_for("my_sessions.list_sessions"), code=303)


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions() -> ResponseReturnValue:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    user = current_user()
    assert user is not None
    ended = login_sessions.revoke(
        db.session(),
        user.id,
        None,
        access_token_lifetime=runtime().settings.access_token_lifetime,
        actor_id=user.id,
        keep_sid=g.login_session.sid,
    )
    flash(f"Signed out of {ended} other session{'' if ended == 1 else 's'}.", "success")
    return redirect(url_for("my_sessions.list_sessions"), code=303)


@bp.post("/account/sessions/end-all")
@login_required
def end_all_sessions() -> ResponseReturnValue:
    """Sign out everywhere: every session, this one included, and every grant of every
    app, offline ones too (a lost phone, a shared computer)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    user = current_user()
    assert user is not None
    lifetime = runtime().settings.access_token_lifetime
    login_sessions.revoke(
        db.session(), user.id, None, access_token_lifetime=lifetime, actor_id=user.id
    )
    revoke_user_tokens(db.session(), user.id, lifetime)
    audit.record(db.session(), "user.signed_out_everywhere", actor_id=user.id, subject_id=user.id)
    sign_out()
    flash("You are signed out everywhere, and your apps must ask you to sign in again.", "info")
    return redirect(url_for("accounts.sign_in"), code=303)
