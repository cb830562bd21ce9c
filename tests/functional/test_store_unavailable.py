"""REL-02 / LOG-05: when the database or Redis is unreachable the server fails closed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event

from tests.conftest import make_app


@pytest.fixture
def app_without_database(tmp_path):
    return make_app(tmp_path, "postgresql://postgres@127.0.0.1:1/unreachable")


def test_REL_02_readiness_reports_database_down_while_liveness_stays_up(app_without_database):
    """/readyz answers 503 when the database is unreachable; /healthz still answers 200."""
    client = app_without_database.test_client()
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_REL_02_token_endpoint_fails_closed_with_503_json(app_without_database):
    """A token request during a database outage gets a JSON 503, never tokens or a 500."""
    client = app_without_database.test_client()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
    )
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert "psycopg" not in response.get_data(as_text=True)


@contextmanager
def database_dies_after_the_user_loaded(app: Flask) -> Iterator[None]:
    """From the first before-request hook added after the app's own (the signed-in user is
    loaded by then) every statement fails as a database that went away would."""
    from identity.extensions import db

    down = {"now": False}

    def goes_away() -> None:
        down["now"] = True

    with app.app_context():
        engine = db.engine
    dbapi: Any = engine.dialect.loaded_dbapi  # sqlite3 or psycopg: its own error class

    def refuse(*_args: Any) -> None:
        if down["now"]:
            raise dbapi.OperationalError("disk i/o error")

    hooks = app.before_request_funcs.setdefault(None, [])
    hooks.append(goes_away)
    event.listen(engine, "before_cursor_execute", refuse)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production
    try:
        yield
    finally:
        down["now"] = False
        event.remove(engine, "before_cursor_execute", refuse)
        hooks.remove(goes_away)


def test_REL_02_signed_in_browser_gets_the_503_page_when_the_database_dies_mid_request(
    app, signed_in
):
    """The rollback before the error page expires the signed-in user; the 503 page must not
    reload it (for the header's email) from the database that is down, or it becomes a
    500. It answers 503 and names no one."""
    assert b"alice@example.org" in signed_in.get("/account").data
    with database_dies_after_the_user_loaded(app):
        response = signed_in.get("/account")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "temporarily unavailable" in page
    assert "alice@example.org" not in page
    assert signed_in.get("/account").status_code == 200  # back, still signed in


def test_LOG_05_redis_outage_on_rate_limited_page_is_503(tmp_path, database_url):
    """With the rate-limit store down a limited POST answers 503 instead of skipping the limit."""
    app = make_app(
        tmp_path,
        database_url,
        ratelimit_enabled=True,
        ratelimit_storage_url="redis://127.0.0.1:1/0",
    )
    app.config["WTF_CSRF_ENABLED"] = False
    response = app.test_client().post(
        "/sign-in", data={"email": "a@example.org", "password": "x" * 12}
    )
    assert response.status_code == 503


def test_LOG_05_rate_limit_store_lost_after_the_check_logs_one_warning_and_answers_503(
    app_factory, monkeypatch, caplog
):
    """Redis goes away between the check before the view and the count of the failed
    sign-in after it: the answer is still 503, logged as one warning line (no traceback,
    no email), not as "Exception on ..." and "Request finalizing failed ..." tracebacks."""
    from identity.extensions import limiter

    app = app_factory(ratelimit_enabled=True)
    app.config["WTF_CSRF_ENABLED"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer and log as in production

    def store_gone(*_args: Any, **_kwargs: Any) -> bool:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    # The check reads the window (get_moving_window); counting adds to it (acquire_entry).
    monkeypatch.setattr(limiter.storage, "acquire_entry", store_gone)
    caplog.set_level(logging.INFO)
    response = app.test_client().post(
        "/sign-in", data={"email": "nobody@example.org", "password": "x" * 12}
    )
    assert response.status_code == 503
    assert "temporarily unavailable" in response.get_data(as_text=True)
    noted = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.getMessage()) for r in noted] == [
        ("identity.errors", "WARNING", "store unavailable")
    ]
    assert noted[0].exc_info is None
    assert noted[0].__dict__["store"] == "rate_limit"
    assert "nobody@example.org" not in caplog.text


def test_REL_09_keys_under_another_secret_give_a_generic_500(app_factory, tmp_path):
    """Signing keys that do not decrypt with the configured secret answer a generic 500
    that does not describe the key problem (the log does)."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    first = app_factory()
    with first.app_context():
        ensure_keys(db.session, first.extensions["identity"].keys.cipher, ("ES256",))
        db.session.commit()
    other = app_factory(secret_key="another-secret-key-" + "y" * 32)
    response = other.test_client().get("/jwks.json")
    assert response.status_code == 500
    assert "decrypt" not in response.get_data(as_text=True)
    assert response.json["error"] == "server_error"


def test_REL_02_a_commit_the_database_refuses_answers_503_in_one_warning(app, signed_in, caplog):
    """The database goes away between the view and the request's commit: nothing was kept,
    the answer is 503 (never the view's 200 nor a 500), logged as one warning line."""
    from sqlalchemy.exc import OperationalError

    from identity.extensions import db

    with app.app_context():
        dbapi: Any = db.engine.dialect.loaded_dbapi

    def refuse(session: Any) -> None:
        raise OperationalError("COMMIT", {}, dbapi.OperationalError("disk i/o error"))

    app.config["PROPAGATE_EXCEPTIONS"] = False
    event.listen(db.session, "before_commit", refuse)
    try:
        with caplog.at_level(logging.WARNING):
            answer = signed_in.get("/account")
    finally:
        event.remove(db.session, "before_commit", refuse)
    assert answer.status_code == 503, answer.status_code
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(getattr(r, "event", "") == "error.store_unavailable" for r in caplog.records)
