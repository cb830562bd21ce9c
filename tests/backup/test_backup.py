"""`identity backup create|verify|restore` against real databases, in-process.

A server's state (signing keys, a client, a user with a password and a passkey, a grant
with its access and refresh tokens, the audit trail) is backed up and restored into the
other kind of database and back (SQLite and PostgreSQL; the suite runs on each), every row
comes back equal, and the restored server goes on where the first stopped. A backup taken
while another thread writes between every table it reads is consistent. A wrong key, a
damaged file, a database that is not empty, an older schema: each is met as documented.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import TEST_DATABASE_URL, make_app, sign_in
from tests.integration.conftest import IDENTITY, require
from tests.oauth.bcp_support import install_keys, introspect, refresh, signed_in_browser
from tests.oauth.bcp_support import tokens_for as code_flow
from tests.oauth.conftest import RegisteredClient

KIND = "postgresql" if TEST_DATABASE_URL.startswith("postgresql") else "sqlite"
OTHER = "sqlite" if KIND == "postgresql" else "postgresql"
# The other kind's server on a SQLite run: the one CI starts (.ci/run).
PG_SERVER = (
    TEST_DATABASE_URL if KIND == "postgresql" else "postgresql://postgres@127.0.0.1:5432/postgres"
)


# Databases and the command ------------------------------------------------------------------


def _admin_engine() -> Any:
    return create_engine(
        make_url(PG_SERVER).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Fresh, empty databases of either kind; PostgreSQL ones are dropped afterwards."""
    made: list[str] = []

    def make(kind: str = KIND) -> str:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'database-{len(made)}.db'}"
        else:
            name = f"identity_backup_{uuid.uuid4().hex[:12]}"
            engine = _admin_engine()
            try:
                with engine.connect() as connection:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
            except OperationalError:
                require(False, f"PostgreSQL at {PG_SERVER} answers (cross-database backups)")
            finally:
                engine.dispose()
            url = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
        made.append(url)
        return url

    yield make
    servers = [make_url(url).database for url in made if url.startswith("postgresql")]
    if servers:
        engine = _admin_engine()
        with engine.connect() as connection:
            for database in servers:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup.key"
    path.write_text(os.urandom(32).hex() + "\n")
    return path


@pytest.fixture
def identity(app: Flask, tmp_path: Path) -> Callable[..., Any]:
    """``identity ARGS`` in-process, on the test database or ``url``, with the test app's
    secret key (which the restored signing keys need)."""
    from identity.cli import register_commands

    settings = app.extensions["identity"].settings
    command = register_commands()

    def run(*args: str, url: str | None = None, code: int = 0, input: str | None = None) -> Any:
        env = {
            "IDENTITY_DATABASE_URL": url or settings.database_url,
            "IDENTITY_INSTANCE_PATH": str(tmp_path / "cli"),
            "IDENTITY_SECRET_KEY": settings.secret_key.get_secret_value(),
            "IDENTITY_ISSUER": settings.issuer,
            "IDENTITY_MAIL_BACKEND": "file",
        }
        result = CliRunner().invoke(command, list(args), env=env, input=input)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return run


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows as the models read them (typed: UUIDs, aware times, bytes, JSON),
    ordered by primary key; a JSON column also says whether it is SQL NULL."""
    from sqlalchemy import JSON

    from identity.models import Base

    engine = create_engine(url)
    found = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            nulls = [c.is_(None) for c in table.columns if isinstance(c.type, JSON)]
            statement = select(*table.columns, *nulls).order_by(*table.primary_key.columns)
            found[table.name] = [tuple(row) for row in connection.execute(statement)]
    engine.dispose()
    return found


def assert_same(restored: dict[str, list[Any]], original: dict[str, list[Any]]) -> None:
    """Equal, but for the records restores added at the end of the audit trail."""
    for name, original_rows in original.items():
        if name == "audit_events":
            assert restored[name][: len(original_rows)] == original_rows
        elif name != "audit_head":
            assert restored[name] == original_rows, name


# A server with something to lose ------------------------------------------------------------


@pytest.fixture
def state(app: Flask, make_user: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Alice with a password and a passkey, a client, and a grant with its tokens."""
    from identity.extensions import db
    from identity.models import WebAuthnCredential

    install_keys(app, monkeypatch)
    alice = make_user(roles=("auditor",))
    rp: RegisteredClient = make_client(first_party=True)
    tokens = code_flow(signed_in_browser(app), rp, scope="openid profile email offline_access")
    with app.app_context():
        db.session.add(
            WebAuthnCredential(
                user_id=alice,
                credential_id="cred-1",
                public_key=b"\x00\xa5\xffCOSE\n",
                sign_count=2**40,
                transports=["usb", "nfc"],
                name="Key",
            )
        )
        db.session.commit()
    return rp, tokens


# Round trips --------------------------------------------------------------------------------


def test_REL_08_restored_through_the_other_database_kind_and_back(
    app: Flask, state: Any, identity: Any, databases: Any, key_file: Path, tmp_path: Path
) -> None:
    """SQLite -> PostgreSQL -> SQLite (or the reverse): every row equal at each step; the
    server restored goes on: the access token issued before still verifies, the refresh
    token rotates, the password signs in, the audit chain is intact."""
    from identity.audit import verify_chain
    from identity.extensions import db
    from identity.models import Base

    rp, tokens = state
    original = rows(app.extensions["identity"].settings.database_url)
    first, second = tmp_path / "first.idb", tmp_path / "second.idb"
    made = identity("backup", "create", str(first), "--key-file", str(key_file))
    tables = len(Base.metadata.tables)  # every table of the models, none left out
    assert made.stdout.startswith(f"wrote {first}: {tables} tables, ")
    assert f"from {KIND}" in made.stdout and made.stderr == ""
    assert first.stat().st_mode & 0o777 == 0o600

    elsewhere = databases(OTHER)
    restored = identity("backup", "restore", str(first), "--key-file", str(key_file), url=elsewhere)
    assert "erased again: 0 accounts" in restored.stdout
    assert_same(rows(elsewhere), original)
    identity("backup", "create", str(second), "--key-file", str(key_file), url=elsewhere)
    assert (
        f"from {OTHER}"
        in identity("backup", "verify", str(second), "--key-file", str(key_file)).stdout
    )

    back = databases(KIND)
    identity("backup", "restore", str(second), "--key-file", str(key_file), url=back)
    assert_same(rows(back), original)

    server = make_app(tmp_path / "restored", back)
    try:
        browser = server.test_client()
        assert introspect(browser, rp, tokens["access_token"])["active"] is True
        rotated = refresh(browser, rp, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.json
        assert rotated.json["refresh_token"] != tokens["refresh_token"]
        assert introspect(browser, rp, rotated.json["access_token"])["active"] is True
        assert sign_in(server.test_client()).status_code == 303
        with server.app_context():
            check = verify_chain(db.session)
            assert check.intact, check.detail
            events = [e for (e,) in db.session.execute(text("SELECT event FROM audit_events"))]
            assert events.count("backup.restored") == 2
    finally:
        with server.app_context():
            db.engine.dispose()


def test_REL_11_a_backup_taken_while_another_thread_writes_is_one_moment(
    app: Flask, state: Any, identity: Any, databases: Any, tmp_path: Path
) -> None:
    """Between every two tables the backup reads, a writer commits audit records, a user
    and a refresh token of theirs. The backup holds none of them: its audit trail ends at
    the tip it holds, and no grant is without its user (restoring it would fail)."""
    from identity import audit
    from identity.backup import Progress, Secret, create
    from identity.database import create_snapshot_engine
    from identity.extensions import db
    from identity.models import Client, RefreshToken, User

    secret = Secret(key=os.urandom(32))
    committed = threading.Semaphore(0)
    started, stop = threading.Event(), threading.Event()
    written: list[int] = []

    def writer() -> None:
        with app.app_context():
            client_pk = db.session.execute(select(Client.id)).scalar_one()
            started.wait(timeout=30)
            while not stop.is_set():
                now = datetime.now(UTC)
                user = User(email=f"w{len(written)}@example.org", password_hash="-")
                db.session.add(user)
                db.session.flush()
                db.session.add(
                    RefreshToken(
                        token_hash=uuid.uuid4().hex,
                        family_id=uuid.uuid4(),
                        client_pk=client_pk,
                        user_id=user.id,
                        auth_time=now,
                        expires_at=now + timedelta(hours=1),
                        family_expires_at=now + timedelta(days=1),
                    )
                )
                audit.record(db.session, "test.written", subject_id=user.id)
                db.session.commit()
                written.append(1)
                committed.release()
            db.session.remove()

    class Interleaved(Progress):
        def start(self, rows: int) -> None:
            started.set()  # the snapshot is taken: its first statements have run

        def advance(self, table: str, rows: int) -> None:
            assert committed.acquire(timeout=10), "the writer stopped"

    with app.app_context():
        before = db.session.execute(select(func.count()).select_from(User)).scalar_one()
    thread = threading.Thread(target=writer)
    thread.start()
    engine = create_snapshot_engine(app.extensions["identity"].settings)
    path = tmp_path / "busy.idb"
    try:
        with path.open("wb") as sink:
            header = create(engine, sink, secret, Interleaved())
    finally:
        started.set()
        stop.set()
        thread.join()
        engine.dispose()
    assert len(written) >= len(header.tables)
    assert dict(header.tables)["users"] == before

    key = tmp_path / "busy.key"
    key.write_bytes(secret.key or b"")
    target = databases()
    identity("backup", "restore", str(path), "--key-file", str(key), url=target)
    server = make_app(tmp_path / "busy", target)
    try:
        with server.app_context():
            assert db.session.execute(select(func.count()).select_from(User)).scalar_one() == before
            emails = db.session.execute(select(User.email)).scalars()
            assert not any(email.startswith("w") for email in emails)
            check = audit.verify_chain(db.session)
            assert check.intact, check.detail
    finally:
        with server.app_context():
            db.engine.dispose()


# What is refused ----------------------------------------------------------------------------


def test_REL_14_wrong_key_damaged_or_cut_short_fail_clearly(
    state: Any, identity: Any, databases: Any, key_file: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """verify and restore exit 1 with one line naming the problem; a restore touches
    nothing unless the whole file reads well (REL-13)."""
    from identity.backup import Secret, container
    from identity.backup.container import Writer
    from identity.backup.contents import Header, end_line

    monkeypatch.setattr(container, "SCRYPT_LOG_N", 10)  # the file says so: reading follows
    path = tmp_path / "b.idb"
    short = identity(
        "backup", "create", str(path), "--passphrase-stdin", input="too short\n", code=1
    )
    assert "at least 12 characters" in short.output and not path.exists()
    passphrase = "correct horse battery staple\n"
    identity("backup", "create", str(path), "--passphrase-stdin", input=passphrase)
    assert (
        "intact"
        in identity("backup", "verify", str(path), "--passphrase-stdin", input=passphrase).stdout
    )

    def fails(file: Path, message: str, *options: str, input: str = passphrase) -> None:
        result = identity(
            "backup", "verify", str(file), *options, "--passphrase-stdin", input=input, code=1
        )
        assert result.output == f"Error: {file}: {message}\n"

    fails(path, "wrong passphrase for this backup (or its header is damaged)", input="nope\n")
    data = path.read_bytes()
    cut, altered = tmp_path / "cut.idb", tmp_path / "altered.idb"
    cut.write_bytes(data[: len(data) - 100])
    fails(cut, "the backup is cut short (truncated)")
    changed = bytearray(data)
    changed[len(data) // 2] ^= 0x20
    altered.write_bytes(bytes(changed))
    fails(altered, "the backup is damaged or was altered (chunk 1 fails authentication)")
    with_key = identity("backup", "verify", str(path), "--key-file", str(key_file), code=1)
    assert "encrypted with a passphrase: give --passphrase-stdin" in with_key.output

    target = databases("sqlite")  # refused before the database is touched, either kind
    identity(
        "backup",
        "restore",
        str(altered),
        "--passphrase-stdin",
        url=target,
        input=passphrase,
        code=1,
    )
    engine = create_engine(target)
    assert inspect(engine).get_table_names() == []
    engine.dispose()

    newer = tmp_path / "newer.idb"
    with newer.open("wb") as sink:
        writer = Writer(sink, Secret.from_key_file(key_file))
        writer.write(Header("9999_future", "2030-01-01T00:00:00+00:00", "sqlite", []).line())
        writer.write(end_line(0))
        writer.close()
    unknown = identity(
        "backup", "restore", str(newer), "--key-file", str(key_file), url=target, code=1
    )
    assert "schema revision 9999_future is unknown to this version of identity" in unknown.output
    nowhere = tmp_path / "missing" / "b.idb"
    unwritable = identity("backup", "create", str(nowhere), "--key-file", str(key_file), code=1)
    assert f"cannot write {nowhere}: No such file or directory" in unwritable.output

    for options in ([], ["--passphrase-stdin", "--key-file", str(key_file)]):
        usage = identity("backup", "verify", str(path), *options, code=2)
        assert "give exactly one of --passphrase-stdin and --key-file" in usage.output


def test_REL_13_a_database_with_rows_is_replaced_only_when_asked_and_keeps_its_erasures(
    app: Flask,
    make_user: Any,
    identity: Any,
    databases: Any,
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restoring over rows is refused (naming them) unless --replace. An account erased
    after the backup was taken is erased again: the ledger of the replaced database is kept
    and re-applied (GDPR-10)."""
    make_user("alice@example.org")
    make_user("bob@example.org")
    path = tmp_path / "b.idb"
    identity("backup", "create", str(path), "--key-file", str(key_file))
    target = databases()
    identity("backup", "restore", str(path), "--key-file", str(key_file), url=target)
    refused = identity(
        "backup", "restore", str(path), "--key-file", str(key_file), url=target, code=1
    )
    assert "the database is not empty: rows in audit_events (" in refused.output
    assert "add --replace to drop every table first" in refused.output

    identity(
        "gdpr", "erase", "bob@example.org", "--reason", "ticket 1", "--now", "--yes", url=target
    )
    if KIND == "postgresql":  # a server still connected: no endless wait for its locks
        from identity.backup import restoring

        monkeypatch.setattr(restoring, "LOCK_TIMEOUT", 1)
        engine = create_engine(target)
        with engine.connect() as server:
            server.execute(text("SELECT count(*) FROM users"))  # holds its lock until the end
            busy = identity(
                "backup",
                "restore",
                str(path),
                "--key-file",
                str(key_file),
                "--replace",
                url=target,
                code=1,
            )
        engine.dispose()
        assert "the database is in use" in busy.output
        assert "stop every server of it first" in busy.output
    replaced = identity(
        "backup", "restore", str(path), "--key-file", str(key_file), "--replace", url=target
    )
    assert "kept 1 erasures newer than the backup" in replaced.stdout
    assert "erased again: 1 account\n" in replaced.stdout
    users = identity("users", "list", url=target).stdout
    assert "alice@example.org" in users and "bob@example.org" not in users
    assert "intact" in identity("audit", "verify", url=target).stdout


def test_REL_13_an_older_backup_is_upgraded_after_loading(
    identity: Any, databases: Any, key_file: Path, tmp_path: Path
) -> None:
    """A backup made at an older schema revision is loaded at that revision, then the
    schema is upgraded to this version's newest."""
    from identity import migrate

    old = databases("sqlite")  # the target is of the kind under test
    engine = create_engine(old)
    head = migrate.head_revision(engine)
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    previous = str(script.get_revision(head).down_revision)
    migrate.upgrade(engine, previous)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO change_generations (topic, generation, changed_at) "
                "VALUES ('test', 41, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    path = tmp_path / "old.idb"
    identity("backup", "create", str(path), "--key-file", str(key_file), url=old)

    target = databases()
    result = identity("backup", "restore", str(path), "--key-file", str(key_file), url=target)
    assert f"schema revision {previous}," in result.stdout
    assert f"schema upgraded to revision {head}\n" in result.stdout
    engine = create_engine(target)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT generation FROM change_generations WHERE topic = 'test'")
        )
        assert found.scalar_one() == 41
        assert migrate.current_revision(engine) == head
    engine.dispose()


def test_postgresql_sequences_continue_after_the_restored_rows(databases: Any) -> None:
    """Serial and identity columns get their sequences set past the largest value loaded
    (identity's own tables have none today; a future one must not collide)."""
    from identity.backup.restoring import reset_sequences

    engine = create_engine(databases("postgresql"))
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE counted (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)")
        )
        connection.execute(text("CREATE TABLE numbered (id serial PRIMARY KEY, note text)"))
        connection.execute(text("INSERT INTO counted (id) VALUES (1), (7)"))
        assert reset_sequences(connection) == 2
        new = connection.execute(text("INSERT INTO counted DEFAULT VALUES RETURNING id"))
        assert new.scalar_one() == 8
        first = connection.execute(text("INSERT INTO numbered (note) VALUES ('a') RETURNING id"))
        assert first.scalar_one() == 1
    engine.dispose()


def test_a_progress_bar_on_a_terminal_only(tmp_path: Path, key_file: Path) -> None:
    """On a terminal standard error shows a progress bar (the in-process runs above, not
    on one, show none: their standard error is empty)."""
    import pty

    from identity.backup import Secret
    from identity.backup.container import Writer
    from identity.backup.contents import Header, end_line

    path = tmp_path / "empty.idb"
    with path.open("wb") as sink:
        writer = Writer(sink, Secret.from_key_file(key_file))
        writer.write(Header("0008", "2026-11-30T12:00:00+00:00", "sqlite", []).line())
        writer.write(end_line(0))
        writer.close()
    args = [IDENTITY, "backup", "verify", str(path), "--key-file", str(key_file)]
    leader, follower = pty.openpty()
    try:
        shown = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=follower, timeout=60, check=True
        )
        os.close(follower)
        terminal = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
    assert "checking" in terminal
    assert shown.stdout.decode().startswith(f"{path}: intact: 0 tables, 0 rows, ")
