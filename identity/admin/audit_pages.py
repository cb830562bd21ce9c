"""/admin/audit: the audit trail filtered, newest first (identity.audit.query, as the admin
API's audit events); one record with everything it holds; its JSON-lines export
(identity.audit.export, as `identity audit export`); and verifying the hash chain, which
leaves an "audit.verified" record the dashboard shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Response, flash, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from identity import audit
from identity.accounts.emails import InvalidEmail, normalize_email
from identity.admin.console import back, operator, page, render
from identity.api.audit import MAX_SEQ, before_seq
from identity.api.common import encode_cursor
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.audit import AuditEvent
from identity.models.base import utcnow
from identity.models.user import User, user_by_email
from identity.rbac.permissions import Permission

PAGE = 50
FIELDS = ("event", "outcome", "actor", "subject", "since", "until")
OUTCOMES = ("success", "failure")


@dataclass
class Filters:
    """The filters as typed (to show them again and carry them in links), what they ask
    of identity.audit (``query``), and what is wrong with them."""

    typed: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    invalid: bool = False  # a value that cannot be read (400), not just an unknown email

    @property
    def links(self) -> dict[str, Any]:
        return {name: value for name, value in self.typed.items() if value}


def _filters(session: Session, args: MultiDict[str, str]) -> Filters:
    typed = {name: args.get(name, "").strip()[:320] for name in FIELDS}
    found = Filters(typed)
    if typed["event"]:
        found.query["event"] = typed["event"][:64]
    if typed["outcome"]:
        if typed["outcome"] not in OUTCOMES:
            found.problems.append("The outcome is success or failure.")
            found.invalid = True
        found.query["outcome"] = typed["outcome"]
    for name, key, label in (("actor", "actor_id", "actor"), ("subject", "subject_id", "subject")):
        if typed[name]:
            found.query[key] = _user_id(session, typed[name], label, found)
    for name, days in (("since", 0), ("until", 1)):  # until names its day: up to its end
        if typed[name]:
            try:
                day = date.fromisoformat(typed[name])
            except ValueError:
                found.problems.append(f"The {name} date is not a date (YYYY-MM-DD).")
                found.invalid = True
                continue
            try:
                found.query[name] = datetime.combine(day + timedelta(days=days), time(), UTC)
            except OverflowError:  # until=9999-12-31: its end is past the last day there is
                found.problems.append(f"The {name} date is too late.")
                found.invalid = True
    return found


def _user_id(session: Session, email: str, label: str, found: Filters) -> uuid.UUID | None:
    try:
        user = user_by_email(session, normalize_email(email))
    except InvalidEmail:
        found.problems.append(f"The {label} is not a valid email address.")
        found.invalid = True
        return None
    if user is None:
        found.problems.append(f"No user has the email address {email} (the {label}).")
        return None
    return user.id


def _emails(session: Session, events: list[AuditEvent]) -> dict[uuid.UUID, str]:
    """The current email of each user the events name (an erased user has none)."""
    ids = {i for e in events for i in (e.actor_id, e.subject_id) if i is not None}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.email).where(User.id.in_(ids)))
    return {user_id: email for user_id, email in rows}


@page("/audit", Permission.AUDIT_READ, endpoint="audit")
def audit_log() -> ResponseReturnValue:
    session = db.session()
    filters = _filters(session, request.args)
    events: list[AuditEvent] = []
    next_url = None
    if not filters.problems:
        events = audit.query(
            session,
            **filters.query,
            before_seq=before_seq(request.args.get("cursor") or None),
            limit=PAGE + 1,
        )
        if len(events) > PAGE:
            events = events[:PAGE]
            cursor = encode_cursor(events[-1].seq)
            next_url = url_for("admin.audit", **filters.links, cursor=cursor)
    return render(
        "audit/list.html",
        400 if filters.invalid else 200,
        events=events,
        emails=_emails(session, events),
        filters=filters,
        outcomes=OUTCOMES,
        next_url=next_url,
        last_verification=audit.last_verification(session),
    )


@page("/audit/<int:seq>", Permission.AUDIT_READ, endpoint="audit_event")
def audit_event(seq: int) -> ResponseReturnValue:
    session = db.session()
    # A seq is a positive BIGINT: a larger number names no record (and no driver takes it).
    entry = session.get(AuditEvent, seq) if 0 < seq < MAX_SEQ else None
    if entry is None:
        raise NotFound(f"no audit record {seq}")
    return render(
        "audit/event.html",
        entry=entry,
        hashed=audit.hashed_fields(entry),
        outside=audit.outside_fields(entry),
        emails=_emails(session, [entry]),
    )


@page("/audit/export", Permission.AUDIT_READ, endpoint="audit_export")
def audit_export() -> ResponseReturnValue:
    """The filtered records as JSON lines, oldest first, streamed as a download: the same
    lines `identity audit export` writes, so the export can be verified again."""
    session = db.session()
    filters = _filters(session, request.args)
    if filters.problems:
        for problem in filters.problems:
            flash(problem, "error")
        return back("admin.audit", **filters.links)

    # Who took a copy of the trail (it holds addresses and emails) is itself on record; the
    # filters by name only, never the people they name.
    audit.record(
        session,
        "audit.exported",
        actor_id=operator().caller.user_id,
        filters=sorted(k for k, v in filters.query.items() if v is not None),
    )

    def lines() -> Iterator[str]:
        # The view's session was closed when the view returned: stream from the one of
        # the request context stream_with_context pushes again, closed at its end.
        records = audit.export(db.session(), **filters.query)
        try:
            for record in records:
                yield json.dumps(record) + "\n"
        finally:
            records.close()

    name = f"audit-{utcnow():%Y%m%dT%H%M%SZ}.jsonl"
    return Response(
        stream_with_context(lines()),
        mimetype="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@page("/audit/verify", Permission.AUDIT_READ, methods=("POST",), endpoint="audit_verify")
def audit_verify() -> ResponseReturnValue:
    """Check the whole chain now; the result is recorded ("audit.verified") and shown."""
    session = db.session()
    check = audit.verify_chain(session)
    audit.record_verification(session, check, operator().caller.user_id)
    if check.intact:
        records = "record" if check.checked == 1 else "records"
        flash(f"The audit chain is intact: {check.checked} {records} checked.", "success")
    else:
        flash(
            f"The audit chain is broken at seq {check.seq}: {check.detail}. "
            f"{check.checked} records before it are intact.",
            "error",
        )
    return back("admin.audit", _anchor="verify")
