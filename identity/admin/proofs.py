"""Fresh proofs in the console: before a sensitive action the operator answers with their
password or an authenticator code *now*, and a change that would give someone every
permission (``*``, the admin role or any role, group or parent that leads to it) waits for
such a proof, whichever page it comes from.

The second rule is checked on the outcome, not on the form: the action runs in a savepoint,
and when the principals holding ``*`` afterwards include one that did not before, it is
rolled back and a confirmation page asks for the proof, carrying the form's fields; with
the proof the action runs again. So a new route, or a role that inherits ``admin``, cannot
slip past a check that looks for the name "admin".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import g, render_template, request
from flask import session as cookie_session
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.accounts import throttle
from identity.auth.service import Factors
from identity.extensions import db
from identity.models.user import User
from identity.rbac.policy import Snapshot, superusers
from identity.rbac.store import load_snapshot
from identity.runtime import runtime

TOO_MANY = "Too many wrong answers: try again in {} seconds."


def check_sensitive(answer: str | None, typed: str | None, expected: str | None) -> str | None:
    """What is wrong with a sensitive action's form, or None when it may go ahead.

    ``answer``: the operator's password or authenticator code, checked now (a proof of
    presence, not of a sign-in an hour ago), under a per-operator throttle like the
    sign-in's, so a borrowed session is no password oracle. ``expected``: what a
    destructive action asks to be typed (the user's email, the client id, the key id);
    None when none is asked.
    """
    if expected is not None and (typed or "").strip() != expected:
        return f"Type {expected} exactly to confirm."
    session = db.session()
    user: User = g.operator.user
    counter = f"reauth:{user.id}"
    wait = throttle.wait_seconds(session, counter)
    if wait:
        return TOO_MANY.format(wait)
    if not answer or not Factors(session, runtime()).reauthenticate(user, answer):
        throttle.register_failure(session, counter, runtime().throttle_policy)
        return "Your password or authenticator code is not right."
    throttle.clear(session, counter)
    g.fresh_proof = True
    return None


def guard_escalation(action: Callable[[], ResponseReturnValue]) -> ResponseReturnValue:
    """Run a console action; if it would give someone every permission without a fresh
    proof in this request, undo it and ask for the proof (then run it again)."""
    session = db.session()
    before = superusers(load_snapshot(session))
    flashed = len(cookie_session.get("_flashes", []))
    savepoint = session.begin_nested()
    try:
        response = action()
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        raise
    if g.get("fresh_proof") or not savepoint.is_active:
        if savepoint.is_active:
            savepoint.commit()
        return response
    session.flush()
    after = load_snapshot(session)
    gained = superusers(after) - before
    if not gained:
        savepoint.commit()
        return response
    savepoint.rollback()
    if "_flashes" in cookie_session:  # what the undone action said it did
        cookie_session["_flashes"] = cookie_session["_flashes"][:flashed]
    who = _names(session, after, gained)
    answer = request.form.get("reauth")
    if not answer:
        return _confirm(who, None, 200)
    problem = check_sensitive(answer, None, None)
    if problem is not None:
        return _confirm(who, problem, 400)
    return action()


def _confirm(who: list[str], error: str | None, status: int) -> ResponseReturnValue:
    carried = [
        (name, value)
        for name, values in request.form.lists()
        if name not in ("csrf_token", "reauth")
        for value in values
    ]
    page = render_template("admin/confirm_escalation.html", who=who, carried=carried, error=error)
    return page, status


def _names(session: Session, snapshot: Snapshot, ids: frozenset[uuid.UUID]) -> list[str]:
    emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())
    names = []
    for principal in sorted(ids, key=str):
        if principal in emails:
            names.append(f"the user {emails[principal]}")
        elif principal in snapshot.groups:
            names.append(f"the group {snapshot.groups[principal].name} and its members")
        else:
            names.append(f"the service account of {snapshot.names.get(principal, principal)}")
    return names
