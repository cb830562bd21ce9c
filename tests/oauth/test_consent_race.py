"""Two first consents of one user to one client at the same moment (a double-submitted
consent form, two tabs): the second must not fail on the unique (user, client) constraint,
and the consent ends up with the scopes of both."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from identity.extensions import db
from identity.models.base import utcnow
from identity.models.oauth import Client, Consent
from identity.oauth.authorize.flow import remember_consent
from tests.conftest import csrf_token, sign_in
from tests.oauth.conftest import _request_id, authorize_url, callback_params, pkce_pair


def _client_pk(app: Any, client_id: str) -> uuid.UUID:
    with app.app_context():
        return db.session.execute(
            select(Client.id).where(Client.client_id == client_id)
        ).scalar_one()


def _consents(app: Any, user_id: uuid.UUID) -> list[list[str]]:
    with app.app_context():
        rows = db.session.execute(select(Consent).where(Consent.user_id == user_id)).scalars()
        return [list(row.scopes) for row in rows]


def test_a_consent_stored_meanwhile_is_merged_not_a_500(app, client, user, rp):
    """The other request's consent row appears just before this one stores its own (the
    moment the read-then-insert lost): the answer is still the code, not a 500, and the
    consent holds both requests' scopes."""
    client_pk = _client_pk(app, rp.client_id)
    assert sign_in(client).status_code == 303
    url = authorize_url(rp, pkce_pair()[1], scope="openid profile")
    page = client.get(url)
    assert page.status_code == 200 and b'action="/authorize/consent"' in page.data

    with app.app_context():
        engine = db.engine
    raced = []

    def other_request_commits_first(connection: Any, _cursor: Any, statement: str, *_: Any):
        if raced or not statement.lstrip().upper().startswith("INSERT INTO CONSENTS"):
            return
        raced.append(True)  # before executing: the insert below comes through here too
        now = utcnow()
        connection.execute(
            Consent.__table__.insert().values(
                id=uuid.uuid4(),
                user_id=user,
                client_pk=client_pk,
                scopes=["email", "openid"],
                created_at=now,
                updated_at=now,
            )
        )

    event.listen(engine, "before_cursor_execute", other_request_commits_first)
    try:
        response = client.post(
            "/authorize/consent",
            data={
                "csrf_token": csrf_token(page.data),
                "request_id": _request_id(page.data),
                "decision": "allow",
            },
        )
    finally:
        event.remove(engine, "before_cursor_execute", other_request_commits_first)

    assert raced, "the consent was stored without an INSERT: the race was not staged"
    assert response.status_code == 303, response.data
    assert response.headers["Location"].startswith(rp.redirect_uri)
    assert "code" in callback_params(response.headers["Location"])
    assert _consents(app, user) == [["email", "openid", "profile"]]


def test_two_transactions_consenting_at_once_both_commit_with_merged_scopes(app, user, rp):
    """Two real transactions: the first stores its consent and has not committed when the
    second stores its own. The second waits for the first (PostgreSQL: the unique index;
    SQLite: the write lock), then adds its scopes to the first's instead of failing."""
    client_pk = _client_pk(app, rp.client_id)
    who = type("Who", (), {"id": user})()
    what = type("What", (), {"pk": client_pk})()
    with app.app_context():
        engine = db.engine
    errors: list[SQLAlchemyError] = []

    def second() -> None:
        with Session(engine) as session:
            try:
                remember_consent(session, who, what, ["openid", "email"])
                session.commit()
            except SQLAlchemyError as error:  # reported by the assertion below
                errors.append(error)

    with Session(engine) as first:
        remember_consent(first, who, what, ["openid", "profile"])
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second consent did not wait for the first"
        first.commit()
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []
    assert _consents(app, user) == [["email", "openid", "profile"]]
