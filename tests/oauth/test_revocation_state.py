"""The revocation state and UserInfo profiles in a worker's memory (identity.revocation_state,
identity.oauth.profiles), in one process with its change listener running.

They are used on PostgreSQL only, so this module runs on a PostgreSQL database of its own
in both passes (the SQLite pass measures coverage). Each test checks that while the state is current
a token check reads no database (``read_rows`` is made to fail), that what this process or
another commits is honoured at once or within a heartbeat, and that a state not confirmed
by its channel is not used: checks go back to the database. Two real server processes are in
tests/integration/test_revocation_channel.py."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, make_app
from tests.oauth.test_token_verification import Tokens

pytestmark = pytest.mark.usefixtures("fast_keys")

ADMIN_URL = (
    TEST_DATABASE_URL
    if TEST_DATABASE_URL.startswith("postgresql")
    else "postgresql://postgres@127.0.0.1:5432/postgres"
)
WITHIN = 1.0  # a change made elsewhere is honoured within this many seconds
REDIS_URL = "redis://127.0.0.1:6379/0"


def _admin(statement: str) -> None:
    engine = create_engine(
        make_url(ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database for this module (overrides the run's database)."""
    from identity import migrate
    from identity.extensions import db

    name = f"identity_rs_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    app = make_app(tmp_path_factory.mktemp("migrate"), url)
    with app.app_context():
        migrate.upgrade(db.engine)
        db.engine.dispose()
    yield url
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """The channel: PostgreSQL's LISTEN/NOTIFY (the default), or Redis pub/sub."""
    return str(getattr(request, "param", ""))


both_channels = pytest.mark.parametrize(
    "channel", ["", REDIS_URL], ids=["notify", "redis"], indirect=True
)


@pytest.fixture
def app(app_factory: Any, channel: str) -> Any:
    return app_factory(change_channel_url=channel)


@pytest.fixture
def listening(app: Any, channel: str) -> Iterator[Any]:
    """The app's runtime with its change listener running and its state loaded."""
    from identity.change_listener import ChangeListener
    from identity.extensions import db

    rt = app.extensions["identity"]
    with app.app_context():
        listener = ChangeListener(rt.changes, db.engine, channel).start()
    wait(lambda: rt.tokens.revocations.current, "the state to load")
    try:
        yield rt
    finally:
        listener.stop()
        listener.thread.join(timeout=5)


@pytest.fixture
def no_database_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``read_rows`` (the database path of a token check) counted and made to fail."""
    from identity.oauth import tokens

    calls: list[int] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise AssertionError("a token check read the database")

    monkeypatch.setattr(tokens, "read_rows", refuse)
    return calls


@pytest.fixture
def tokens(app: Any, keys: Any, make_client: Any, user: uuid.UUID) -> Tokens:
    return Tokens(app, make_client().client_id, user)


def wait(predicate: Any, what: str, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - start


def check(app: Any, token: str) -> dict[str, Any] | None:
    """A token check as introspection makes it (the real clock, so the listener runs)."""
    from identity.extensions import db, lazy_session

    with app.app_context():
        try:
            return app.extensions["identity"].tokens.verify_access_token(lazy_session(), token)
        finally:
            db.session.remove()


def fresh_token(tokens: Tokens, **claims: Any) -> str:
    tokens.now = int(time.time())
    return tokens.token(**claims)


def commit_elsewhere(database_url: str, *statements: str) -> None:
    """What another process does: its own connection, its own commit."""
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def test_a_current_state_checks_tokens_without_the_database(
    app, tokens, listening, no_database_reads
):
    token = fresh_token(tokens)
    assert check(app, token) is not None
    assert no_database_reads == []


@both_channels
def test_a_revocation_committed_here_is_honoured_by_the_next_check(
    app, tokens, listening, no_database_reads
):
    """The committing process applies its own messages at the commit, before it answers."""
    from identity.extensions import db
    from identity.revocation import remember_revocation

    family = str(uuid.uuid4())
    by_jti, by_family = fresh_token(tokens, jti="one"), fresh_token(tokens, gid=family)
    with app.app_context():
        remember_revocation(db.session, "jti:one", 3600)
        remember_revocation(db.session, f"gid:{family}", 3600)
        db.session.commit()
    assert check(app, by_jti) is None
    assert check(app, by_family) is None
    assert check(app, fresh_token(tokens)) is not None
    assert no_database_reads == []


def test_a_revocation_rolled_back_revokes_nothing(app, tokens, listening, no_database_reads):
    """Messages are hints: each process re-reads what they name, so one sent from a
    savepoint that was undone changes nothing."""
    from identity.extensions import db
    from identity.revocation import remember_revocation

    token = fresh_token(tokens, jti="kept")
    with app.app_context():
        savepoint = db.session.begin_nested()
        remember_revocation(db.session, "jti:kept", 3600)
        savepoint.rollback()
        db.session.commit()
    assert check(app, token) is not None


@both_channels
def test_TOK_19_a_revocation_another_process_commits_arrives_within_a_second(
    app, tokens, listening, no_database_reads, database_url, channel
):
    """Through the channel: NOTIFY in the other process's transaction, or its Redis
    publish after the commit."""
    import redis

    token = fresh_token(tokens, jti="elsewhere")
    assert check(app, token) is not None
    insert = (
        "INSERT INTO token_revocations (key, revoked_at, expires_at)"
        " VALUES ('jti:elsewhere', now(), now() + interval '1 hour')"
    )
    if channel:
        commit_elsewhere(database_url, insert)
        redis.Redis.from_url(channel).publish("identity_changes", "rev jti:elsewhere")
    else:
        commit_elsewhere(database_url, insert, "SELECT pg_notify('identity_changes', 'rev x')")
    took = wait(lambda: check(app, token) is None, "the revocation", timeout=WITHIN)
    assert took < WITHIN
    assert no_database_reads == []


@both_channels
def test_TOK_19_a_lost_message_is_caught_up_within_a_heartbeat_or_two(
    app, tokens, listening, no_database_reads, database_url
):
    """A revocation committed with no message at all (a process that died between its
    commit and its Redis publish) is read by the next heartbeat's catch-up."""
    token = fresh_token(tokens, jti="silent")
    commit_elsewhere(
        database_url,
        "INSERT INTO token_revocations (key, revoked_at, expires_at)"
        " VALUES ('jti:silent', now(), now() + interval '1 hour')",
    )
    wait(lambda: check(app, token) is None, "the catch-up", timeout=2.5)


@both_channels
def test_disabling_a_user_ends_their_tokens_everywhere_and_enabling_does_not_revive_them(
    app, tokens, listening, no_database_reads, database_url
):
    from identity.accounts import management
    from identity.extensions import db
    from identity.models.user import User

    token = fresh_token(tokens)
    with app.app_context():
        user = db.session.get(User, tokens.user_id)
        management.set_disabled(db.session, user, True, access_token_lifetime=3600)
        db.session.commit()
    assert check(app, token) is None
    # Disabled by another process, where the only news is the message: refused too.
    assert tokens.user_id in listening.tokens.revocations._disabled
    time.sleep(1.1)  # a token issued in a later second than the disabling
    with app.app_context():
        user = db.session.get(User, tokens.user_id)
        management.set_disabled(db.session, user, False, access_token_lifetime=3600)
        db.session.commit()
    assert check(app, token) is None  # issued before the disabling
    assert check(app, fresh_token(tokens)) is not None


@both_channels
def test_a_user_disabled_by_a_bare_update_elsewhere_is_refused_on_the_message(
    app, tokens, listening, no_database_reads, database_url, channel
):
    token = fresh_token(tokens)
    commit_elsewhere(
        database_url,
        f"UPDATE users SET disabled_at = now() WHERE id = '{tokens.user_id}'",  # noqa: S608 - a UUID
        f"SELECT pg_notify('identity_changes', 'user {tokens.user_id}')",
    )
    if channel:
        import redis

        redis.Redis.from_url(channel).publish("identity_changes", f"user {tokens.user_id}")
    wait(lambda: check(app, token) is None, "the disabled user", timeout=WITHIN)


def test_TOK_19_a_state_its_channel_stopped_confirming_is_not_used(
    app, tokens, listening, monkeypatch, database_url
):
    """No heartbeat within changes.STALE_AFTER (the channel is down, the thread stalled):
    every check reads the database until the listener has loaded everything again."""
    from identity import changes
    from identity.oauth import tokens as token_module

    real = token_module.read_rows
    reads: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_module, "read_rows", counted)
    token = fresh_token(tokens, jti="while-deaf")
    later = time.monotonic() + changes.STALE_AFTER + 1
    monkeypatch.setattr(changes.time, "monotonic", lambda: later)
    assert not listening.tokens.revocations.current
    # Revoked with no message: only the database knows, and the check asks it.
    commit_elsewhere(
        database_url,
        "INSERT INTO token_revocations (key, revoked_at, expires_at)"
        " VALUES ('jti:while-deaf', now(), now() + interval '1 hour')",
    )
    assert check(app, token) is None
    assert reads


def test_a_channel_that_cannot_be_reached_never_confirms_the_state(app):
    """A Redis channel nobody answers: the state is never loaded or trusted, so every
    check reads the database (and a channel that breaks marks the feed stale at once)."""
    from identity.change_listener import ChangeListener
    from identity.changes import ChangeFeed
    from identity.extensions import db
    from identity.revocation_state import RevocationState

    feed = ChangeFeed()
    state = RevocationState(feed)
    with app.app_context():
        listener = ChangeListener(feed, db.engine, "redis://127.0.0.1:1/0").start()
    try:
        time.sleep(1.5)
        assert not feed.fresh
        assert not state.current
    finally:
        listener.stop()
    feed.update({})
    assert feed.fresh
    feed.lost()
    assert not feed.fresh


def test_TOK_19_an_erased_user_s_tokens_stay_refused_after_a_reload(
    app, tokens, listening, no_database_reads
):
    """No row names an erased account; the erasure ledger's keyed hash of its id, loaded
    for erasures younger than the longest token lifetime, makes a process that loads its
    state after the erasure refuse its tokens too."""
    from identity.extensions import db
    from identity.models.user import User
    from identity.privacy.erasure import Erasure

    token = fresh_token(tokens)
    with app.app_context():
        user = db.session.get(User, tokens.user_id)
        Erasure(db.session, listening).erase(user, reason="test")
        db.session.commit()
    assert check(app, token) is None
    from identity.changes import reader

    with app.app_context():
        connection = db.engine.raw_connection()
        try:
            listening.changes.resync(reader(connection))  # as a process started later
        finally:
            connection.close()
    assert tokens.user_id not in listening.tokens.revocations._disabled
    assert check(app, token) is None


@both_channels
def test_userinfo_answers_from_memory_and_sees_a_change_at_once(
    app, tokens, listening, no_database_reads, monkeypatch
):
    from identity.accounts import management
    from identity.extensions import db
    from identity.models.user import User

    token = fresh_token(tokens, scope="openid profile")
    client = app.test_client()

    def userinfo() -> dict[str, Any]:
        response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()  # type: ignore[no-any-return]

    first = userinfo()
    # Cached now: with the database out of reach, UserInfo still answers.
    monkeypatch.setattr(db.session, "get", _refuse)
    assert userinfo() == first
    monkeypatch.undo()
    monkeypatch.setattr("identity.oauth.tokens.read_rows", _refuse)
    with app.app_context():
        user = db.session.get(User, tokens.user_id)
        management.update_user(db.session, user, name="Renamed")
        db.session.commit()
    assert userinfo()["name"] == "Renamed"


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("read the database")


def test_the_profile_cache_does_not_keep_a_profile_read_during_an_invalidation(app):
    """A profile read from the database while a change message arrived may predate the
    change: it answers this request but is not kept."""
    from identity.oauth.profiles import ProfileCache

    rt = app.extensions["identity"]
    cache = ProfileCache(rt.changes, rt.tokens.revocations)

    class Session:
        def get(self, model: Any, user_id: uuid.UUID) -> Any:
            cache.receive([f"user {user_id}"], lambda sql, params: [])
            return type(
                "U",
                (),
                {
                    "id": user_id,
                    "email": "a@example.org",
                    "name": None,
                    "is_verified": True,
                    "updated_at": None,
                    "is_active": True,
                },
            )()

    rt.tokens.revocations._loaded = True
    rt.changes.update({})
    user_id = uuid.uuid4()
    assert cache.get(Session(), user_id) is not None  # type: ignore[arg-type]
    assert user_id not in cache._entries


@both_channels
def test_TOK_19_a_user_a_command_disables_is_refused_everywhere_by_its_message(
    app, tokens, listening, no_database_reads, channel
):
    """Commands use their own sessions (identity.cli.context): their flushes send the same
    ``user <id>`` message, published to Redis too, so the worker marks the user disabled
    at once, not only through the revocation row."""
    from sqlalchemy.orm import Session

    from identity import changes
    from identity.accounts import management
    from identity.cli.context import command_feed
    from identity.extensions import db
    from identity.models.user import User

    token = fresh_token(tokens)
    with app.app_context():
        engine = db.engine
    with Session(engine) as session:
        session.info[changes.FEED] = command_feed(listening.settings)
        user = session.get(User, tokens.user_id)
        management.set_disabled(session, user, True, access_token_lifetime=3600)
        session.commit()
    state = listening.tokens.revocations
    wait(lambda: tokens.user_id in state._disabled, "the disabled user", timeout=WITHIN)
    assert check(app, token) is None


def test_TOK_19_a_user_whose_row_went_away_stays_refused_after_a_reload(
    app, tokens, listening, no_database_reads, database_url
):
    """No row says a deleted user is gone: the worker keeps what the message told it for as
    long as a token can live, across its reloads."""
    from identity.changes import reader
    from identity.extensions import db

    token = fresh_token(tokens)
    commit_elsewhere(
        database_url,
        f"DELETE FROM users WHERE id = '{tokens.user_id}'",  # noqa: S608 - a UUID
        f"SELECT pg_notify('identity_changes', 'user {tokens.user_id}')",
    )
    wait(lambda: check(app, token) is None, "the deleted user", timeout=WITHIN)
    with app.app_context():
        connection = db.engine.raw_connection()
        try:
            listening.changes.resync(reader(connection))
        finally:
            connection.close()
    assert check(app, token) is None


def test_TOK_19_a_writer_clock_ahead_does_not_blind_the_catch_up(
    app, tokens, listening, no_database_reads, database_url
):
    """A revocation stamped a minute in the future (a host whose clock is ahead) must not
    move the catch-up past revocations others commit meanwhile without a message."""
    token = fresh_token(tokens, jti="after-skew")
    commit_elsewhere(
        database_url,
        "INSERT INTO token_revocations (key, revoked_at, expires_at)"
        " VALUES ('jti:skewed', now() + interval '60 seconds', now() + interval '1 hour')",
    )
    time.sleep(1.5)  # a heartbeat reads the skewed row
    commit_elsewhere(
        database_url,
        "INSERT INTO token_revocations (key, revoked_at, expires_at)"
        " VALUES ('jti:after-skew', now(), now() + interval '1 hour')",
    )
    wait(lambda: check(app, token) is None, "the catch-up", timeout=2.5)
