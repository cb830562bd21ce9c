"""The unit of work: one commit per request and one per command.

Services add, change and flush; they never commit. A request commits once, after its view
returned a response (any status below 500): a view that must keep something while it
answers with an error (a failed sign-in is audited and counted) returns that answer. A
request that raised is rolled back by the error handlers before they render, so a change
half made is never kept; a 5xx answer is rolled back here. Commands use ``transaction()``.

Mail queued in the outbox and change notifications go out only when this commit succeeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http import HTTPStatus

from flask import Flask, Response, g, has_app_context, has_request_context, request
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, SessionTransaction

from identity.audit import ORIGIN, Origin
from identity.changes import FEED, PUBLISHED
from identity.errors import store_unavailable, store_unavailable_response
from identity.extensions import db
from identity.runtime import runtime
from identity.security import client_ip


def _record_origin(session: Session, transaction: SessionTransaction) -> None:
    """A request's unit of work carries where it comes from, for the audit trail. Set when
    the request first uses the database, so requests that never do pay nothing."""
    if ORIGIN not in session.info and has_request_context():
        session.info[ORIGIN] = Origin(
            ip=client_ip(),
            user_agent=(request.user_agent.string or "")[:400] or None,
            request_id=g.get("request_id"),
        )


def _bind_feed(session: Session, transaction: SessionTransaction) -> None:
    """The app's sessions report their commits to this app's change feed
    (identity.changes.watch_sessions)."""
    if FEED not in session.info and has_app_context():
        session.info[FEED] = runtime().changes


def setup_unit_of_work(app: Flask) -> None:
    for name, listener in (
        ("after_transaction_create", _record_origin),
        ("after_transaction_create", _bind_feed),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)

    @app.after_request
    def _commit(response: Response) -> Response:
        if not db.session.registry.has():
            return response  # the request never used the database
        session = db.session()
        if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
            session.rollback()
        elif session.in_transaction() or session.new or session.dirty or session.deleted:
            # A request that touched nothing (a client_credentials token with a cached
            # client) skips the empty transaction the session would start and end.
            try:
                session.commit()
            except OperationalError as error:
                # The database went away between the view and its commit: nothing was
                # kept, and the client is told to try again (REL-02), in one log line.
                if not store_unavailable(error):
                    raise
                with suppress(OperationalError):
                    session.rollback()
                session.info.pop(PUBLISHED, None)
                return store_unavailable_response(error)
            published = session.info.pop(PUBLISHED, None)
            if published:
                runtime().changes.changed_here(published)
        session.info.pop(PUBLISHED, None)  # rolled back: nothing changed
        return response


def rollback() -> None:
    """Undo what the request changed (the error handlers call this before rendering)."""
    if db.session.registry.has():
        db.session.rollback()
        db.session.info.pop(PUBLISHED, None)


@contextmanager
def transaction() -> Iterator[Session]:
    """A command's unit of work: commit at the end, roll back on any error."""
    session = db.session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
