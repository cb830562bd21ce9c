"""/admin/sessions: everyone's live login sessions, newest first, and ending one (with the
grants bound to it) through the same call as the admin API's DELETE of a session."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import current_app, flash, request, url_for
from flask.typing import ResponseReturnValue

from identity.accounts.emails import InvalidEmail, normalize_email
from identity.admin.console import back, operator, page, render
from identity.api.common import decode_cursor, encode_cursor
from identity.api.sessions import end_sessions
from identity.exceptions import Forbidden, InvalidInput, NotFound
from identity.extensions import db
from identity.models.user import User, user_by_email
from identity.rbac.permissions import Permission
from identity.runtime import runtime
from identity.sessions import policy
from identity.sessions import service as login_sessions
from identity.sessions.devices import describe

PAGE = 50


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        created_at = datetime.fromisoformat(key[0])
        # A moment at the calendar's ends may have no UTC equivalent (OverflowError).
        moment = created_at.astimezone(UTC) if created_at.tzinfo is not None else None
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise InvalidInput("The cursor is not valid: pass next_cursor as it came.")
    return moment, key[1]


@page("/sessions", Permission.SESSIONS_READ)
def sessions() -> ResponseReturnValue:
    session = db.session()
    email = request.args.get("email", "").strip()
    user: User | None = None
    problem, status = None, 200
    if email:
        try:
            user = user_by_email(session, normalize_email(email))
        except InvalidEmail as error:
            problem, status = error.message, 400
        else:
            if user is None:
                problem = "No user has that email address."
    rows = []
    next_url = None
    if problem is None:
        rows = login_sessions.active_sessions(
            session,
            policy(runtime().settings),
            user_id=user.id if user else None,
            after=_after(request.args.get("cursor") or None),
            limit=PAGE + 1,
        )
        if len(rows) > PAGE:
            rows = rows[:PAGE]
            last = rows[-1]
            cursor = encode_cursor(last.created_at.isoformat(), last.sid)
            next_url = url_for("admin.sessions", email=email or None, cursor=cursor)
    return render(
        "sessions/list.html",
        status,
        rows=[(row, *describe(row.user_agent)) for row in rows],
        email=email,
        problem=problem,
        next_url=next_url,
        current_sid=operator().login_session.sid,
        link_users="admin.user" in current_app.view_functions,
    )


@page(
    "/sessions/<uuid:user_id>/<sid>/end",
    Permission.SESSIONS_REVOKE,
    methods=("POST",),
    endpoint="sessions_end",
)
def end_session(user_id: uuid.UUID, sid: str) -> ResponseReturnValue:
    email = request.form.get("email") or None
    try:
        end_sessions(operator().caller, user_id, sid)
    except (NotFound, Forbidden) as error:
        flash(f"The session was not ended: {error.message}", "error")
    else:
        flash("The session was ended, and the grants bound to it revoked.", "success")
    return back("admin.sessions", email=email)
