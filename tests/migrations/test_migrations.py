"""Alembic migrations: every step runs both ways with data present, and the newest schema is
exactly what the models declare. Each test gets a new database (SQLite, or PostgreSQL when
IDENTITY_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import JSON, Column, Enum, MetaData, Table, TypeDecorator, func, inspect, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Connection, Engine

from identity import migrate
from identity.models.base import Base, UTCDateTime
from tests.conftest import PASSWORD, TEST_DATABASE_URL, create_database, drop_database, make_app

VERSION_TABLE = "alembic_version"

# SQLAlchemy does not reflect expression indexes on SQLite (role_assignments' unique
# indexes on coalesce(user_id, group_id, client_pk)), so autogenerate cannot compare them
# there; tests/unit/test_rbac_store.py proves they refuse duplicates on both databases.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning"
    ),
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based"),
]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a new, empty database of its own."""
    if TEST_DATABASE_URL.startswith("postgresql"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        url = create_database(f"identity_migrations_{worker}_{uuid.uuid4().hex[:8]}")
    else:
        url = f"sqlite:///{tmp_path / 'identity.db'}"
    app = make_app(tmp_path / "instance", url)
    try:
        yield app
    finally:
        with app.app_context():
            from identity.extensions import db

            db.engine.dispose()
        if url.startswith("postgresql"):
            drop_database(url)


def engine_of(app: Flask) -> Engine:
    from identity.extensions import db

    with app.app_context():
        return db.engine


def sample_value(column: Column[Any], n: int, parents: dict[str, dict[str, Any]]) -> Any:
    """A valid value for ``column`` in round ``n``, unique between rounds; a foreign key
    points at the row inserted into the referenced table in the same round."""
    for foreign_key in column.foreign_keys:
        parent = parents.get(foreign_key.column.table.name)
        return None if parent is None else parent[foreign_key.column.name]
    type_ = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(type_, Enum):
        return type_.enums[0]
    if isinstance(type_, JSON):
        return {"round": n}
    try:
        python_type = type_.python_type
    except NotImplementedError:
        python_type = None
    if python_type is bytes:
        return f"{column.name}-{n}".encode()
    if python_type is bool:
        return n % 2 == 0
    if python_type is int:
        return 1000 + n  # clear of the small numbers the app itself uses (audit seq 1, ...)
    if python_type is uuid.UUID:
        return uuid.uuid4()
    if python_type is datetime:
        return datetime.now(UTC) + timedelta(days=n)
    if python_type is str:
        value = f"{column.name}-{n}".lower()  # lower case satisfies users.email's check
        length = getattr(type_, "length", None)
        return value[-length:] if length else value  # keep the round number
    raise AssertionError(f"no sample value for {column.table.name}.{column.name} ({column.type})")


# Tables an older revision has and a later one dropped (their rows moved elsewhere).
RETIRED_TABLES = {"user_roles", "client_roles"}
# Revisions that move rows into a table they create: its count is not "one more".
FILLED_BY = {"0005": {"role_assignments", "roles"}}
# Rows a fresh schema starts with: the built-in roles.
SEEDED = {"roles": 3}

# Columns left NULL in sample rows: a role assignment has exactly one principal (a user, a
# group or a client), so the sample gives its role to the user only.
LEFT_NULL = {"role_assignments": {"group_id", "client_pk", "scope_client_pk"}}


def table_of(connection: Connection, name: str) -> Table:
    """The model's table, or for a table a later revision dropped, the database's."""
    if name in Base.metadata.tables:
        return Base.metadata.tables[name]
    return Table(name, MetaData(), autoload_with=connection)


def type_of(column: Column[Any]) -> Any:
    """A column's type; for a reflected foreign key, the model type of what it points at
    (reflection sees a UUID as CHAR(32) on SQLite)."""
    for foreign_key in column.foreign_keys:
        target = Base.metadata.tables.get(foreign_key.column.table.name)
        if target is not None:
            return target.c[foreign_key.column.name].type
    return column.type


def tables_in(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {VERSION_TABLE}


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(
                select(func.count()).select_from(table_of(connection, name))
            ).scalar_one()
            for name in tables_in(connection)
        }


def insert_rows(engine: Engine, n: int) -> None:
    """Insert one row into every table the schema has at this revision, filling each column
    it has there."""
    with engine.begin() as connection:
        present = tables_in(connection)
        retired = present - Base.metadata.tables.keys()
        assert retired <= RETIRED_TABLES, f"tables the models do not declare: {sorted(retired)}"
        inserted: dict[str, dict[str, Any]] = {}
        tables = [t for t in Base.metadata.sorted_tables if t.name in present]
        tables += [table_of(connection, name) for name in sorted(retired)]
        for table in tables:
            columns = {c["name"] for c in inspect(connection).get_columns(table.name)}
            row = {
                column.name: None
                if column.name in LEFT_NULL.get(table.name, ())
                else sample_value(column, n, inserted)
                for column in table.columns
                if column.name in columns
            }
            if table.name == "role_parents":  # a role cannot be its own parent
                roles = Base.metadata.tables["roles"]
                row["parent_id"] = connection.execute(
                    select(roles.c.id).where(roles.c.id != row["role_id"]).limit(1)
                ).scalar_one()
            # Only the columns this revision has: a model's defaults for newer ones must not
            # reach the INSERT.
            present_only = sql_table(table.name, *(sql_column(c, type_of(table.c[c])) for c in row))
            connection.execute(present_only.insert(), row)
            inserted[table.name] = row


def revisions(engine: Engine) -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_upgrade_downgrade_upgrade_with_data(app: Flask) -> None:
    """Each step up and down runs with rows in every table, and the schema comes back whole."""
    engine = engine_of(app)
    steps = revisions(engine)
    assert steps

    for n, revision in enumerate(steps, start=1):
        before = row_counts(engine)
        migrate.upgrade(engine, revision)
        assert migrate.current_revision(engine) == revision
        insert_rows(engine, n)
        after = row_counts(engine)
        filled = FILLED_BY.get(revision, set())
        wrong = {
            t: (before.get(t, 0), n)
            for t, n in after.items()
            if t not in filled and n != before.get(t, 0) + 1
        }
        assert after and not wrong, (revision, wrong)

    for revision in reversed(steps):
        assert migrate.current_revision(engine) == revision
        before = row_counts(engine)
        migrate.downgrade(engine, "-1")
        after = row_counts(engine)
        # Tables that survive a step keep their rows (test_rbac_migration_moves_roles checks
        # the rows a step moves back into a table it re-creates).
        assert all(after[t] == before[t] for t in after if t in before), (before, after)
    assert migrate.current_revision(engine) is None
    with engine.connect() as connection:
        assert tables_in(connection) == set()

    migrate.upgrade(engine)
    assert migrate.is_current(engine)
    assert {t: n for t, n in row_counts(engine).items() if n} == SEEDED

    # The app works on the re-created schema: create an account and sign in.
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.runtime import runtime

    with app.test_request_context():
        accounts = Accounts(db.session, runtime())
        accounts.create_user("again@example.org", PASSWORD, verified=True)
        db.session.commit()
        assert accounts.sign_in("again@example.org", PASSWORD).ok
        db.session.commit()
        db.session.remove()

    before = row_counts(engine)
    insert_rows(engine, len(steps) + 1)
    assert all(count == before[t] + 1 for t, count in row_counts(engine).items())


def test_models_and_newest_migration_agree(app: Flask) -> None:
    """Autogenerate finds no difference between the models and a freshly migrated database."""
    engine = engine_of(app)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=migrate.autogenerate_options())
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_rbac_migration_moves_roles_unchanged(app: Flask) -> None:
    """0005 turns every user's and client's role into a global assignment of the same
    role and makes admin built-in; no role gains a power: a client's admin label is not
    carried into the all-powerful built-in admin, and an application's own "auditor" role
    keeps its holders as auditor-legacy. Its downgrade gives the roles back."""
    engine = engine_of(app)
    migrate.upgrade(engine, "0004")
    uid = sqlalchemy.Uuid()
    roles = sql_table(
        "roles",
        *(sql_column(c) for c in ("name", "description")),
        sql_column("id", uid),
        sql_column("created_at", UTCDateTime()),
    )
    user_roles = sql_table("user_roles", sql_column("user_id", uid), sql_column("role_id", uid))
    client_roles = sql_table(
        "client_roles", sql_column("client_pk", uid), sql_column("role_id", uid)
    )
    ids = {name: uuid.uuid4() for name in ("admin", "editor", "auditor", "alice", "bob", "app")}
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for name in ("admin", "editor", "auditor"):
            connection.execute(
                roles.insert(),
                {"id": ids[name], "name": name, "description": "", "created_at": now},
            )
        for name in ("alice", "bob"):
            insert_model_row(connection, "users", n=hash(name) % 1000, id=ids[name])
        insert_model_row(connection, "clients", n=1, id=ids["app"])
        connection.execute(
            user_roles.insert(),
            [
                {"user_id": ids["alice"], "role_id": ids["admin"]},
                {"user_id": ids["alice"], "role_id": ids["editor"]},
                {"user_id": ids["bob"], "role_id": ids["editor"]},
                {"user_id": ids["bob"], "role_id": ids["auditor"]},
            ],
        )
        connection.execute(
            client_roles.insert(),
            [
                {"client_pk": ids["app"], "role_id": ids["editor"]},
                {"client_pk": ids["app"], "role_id": ids["admin"]},
            ],
        )

    migrate.upgrade(engine, "0005")
    assignments = Base.metadata.tables["role_assignments"]
    role_table = Base.metadata.tables["roles"]
    with engine.connect() as connection:
        moved = {
            (row.role_id, row.user_id, row.client_pk, row.scope_client_pk)
            for row in connection.execute(select(assignments))
        }
        query = select(role_table.c.name, role_table.c.builtin, role_table.c.id)
        found = {name: (flag, role_id) for name, flag, role_id in connection.execute(query)}
    assert moved == {
        (ids["admin"], ids["alice"], None, None),
        (ids["editor"], ids["alice"], None, None),
        (ids["editor"], ids["bob"], None, None),
        (ids["auditor"], ids["bob"], None, None),
        (ids["editor"], None, ids["app"], None),
    }
    assert {name: flag for name, (flag, _) in found.items()} == {
        "admin": True,
        "editor": False,
        "auditor-legacy": False,
        "user-manager": True,
        "auditor": True,
    }
    assert found["auditor-legacy"][1] == ids["auditor"]  # the same role, renamed

    migrate.downgrade(engine, "0004")
    with engine.connect() as connection:
        back = {tuple(r) for r in connection.execute(select(user_roles))}
        back_clients = {tuple(r) for r in connection.execute(select(client_roles))}
    assert back == {
        (ids["alice"], ids["admin"]),
        (ids["alice"], ids["editor"]),
        (ids["bob"], ids["editor"]),
        (ids["bob"], ids["auditor"]),
    }
    assert back_clients == {(ids["app"], ids["editor"])}


def insert_model_row(connection: Connection, name: str, *, n: int, **values: Any) -> None:
    """A sample row in a table, filling the model's columns this revision has."""
    table = Base.metadata.tables[name]
    present = {c["name"] for c in inspect(connection).get_columns(name)}
    row = {c.name: sample_value(c, n, {}) for c in table.columns if c.name in present}
    only = sql_table(name, *(sql_column(c, type_of(table.c[c])) for c in row))
    connection.execute(only.insert(), {**row, **values})


def _v1_hash(record: dict[str, Any], prev: str) -> str:
    """The chain hash before 0007: the ids, address and user agent hashed in the clear."""
    import hashlib
    import json

    fields = {
        "seq": record["seq"],
        "occurred_at": record["occurred_at"].isoformat(),
        "event": record["event"],
        "outcome": record["outcome"],
        "actor_id": str(record["actor_id"]) if record["actor_id"] else None,
        "subject_id": str(record["subject_id"]) if record["subject_id"] else None,
        "client_id": None,
        "ip": record["ip"],
        "user_agent": record["user_agent"],
        "request_id": None,
        "data": record["data"],
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


def test_GDPR_08_audit_migration_moves_personal_data_out_of_the_chain(app: Flask) -> None:
    """0007 re-chains a trail written by 0006: each user becomes a pseudonym, the address,
    user agent and email go outside the chain behind a salted digest, a user deleted
    before (id in the trail, no account) is treated as erased, and the chain verifies;
    its downgrade puts the old hashing back, and that chain verifies too."""
    from identity import audit
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    engine = engine_of(app)
    migrate.upgrade(engine, "0006")
    alice, gone = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC).replace(microsecond=0)
    uid = sqlalchemy.Uuid()
    columns = ("seq", "event", "outcome", "ip", "user_agent", "prev_hash", "hash")
    events = sql_table(
        "audit_events",
        *(sql_column(c) for c in columns),
        sql_column("actor_id", uid),
        sql_column("subject_id", uid),
        sql_column("occurred_at", UTCDateTime()),
        sql_column("data", JSON()),
    )
    records = [
        {"actor_id": alice, "subject_id": alice, "data": {"email": "alice@example.org"}},
        {"actor_id": gone, "subject_id": gone, "data": {"reason": "x"}},
        {"actor_id": alice, "subject_id": None, "data": {}},
    ]
    with engine.begin() as connection:
        insert_model_row(connection, "users", n=1, id=alice)
        prev = "0" * 64
        for seq, record in enumerate(records, start=1):
            record.update(
                seq=seq,
                event="user.sign_in",
                outcome="success",
                occurred_at=now,
                ip="198.51.100.9",
                user_agent="probe/1.0",
            )
            record["prev_hash"], record["hash"] = prev, _v1_hash(record, prev)
            prev = record["hash"]
            connection.execute(events.insert(), record)
        connection.execute(
            sql_table(
                "audit_head", sql_column("id"), sql_column("seq"), sql_column("hash")
            ).insert(),
            {"id": 1, "seq": 3, "hash": prev},
        )

    migrate.upgrade(engine, "0007")
    with app.app_context():
        assert audit.verify_chain(db.session).intact
        first, second, third = db.session.query(AuditEvent).order_by(AuditEvent.seq).all()
        assert first.data == {} and first.personal["data"] == {"email": "alice@example.org"}
        assert first.ip == "198.51.100.9" and first.actor_ref == third.actor_ref is not None
        assert (second.actor_id, second.ip, second.personal, second.actor_ref) == (
            None,
            None,
            None,
            None,
        )
        db.session.remove()

    migrate.downgrade(engine, "0006")
    with engine.connect() as connection:
        rows = [
            dict(r) for r in connection.execute(select(events).order_by(events.c.seq)).mappings()
        ]
    prev = "0" * 64
    for row in rows:
        assert row["prev_hash"] == prev and row["hash"] == _v1_hash(row, prev)
        prev = row["hash"]
    assert rows[0]["data"] == {"email": "alice@example.org"}
