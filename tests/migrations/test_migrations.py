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
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import JSON, Column, Enum, TypeDecorator, func, inspect, select
from sqlalchemy.engine import Connection, Engine

from identity import migrate
from identity.models.base import Base
from tests.conftest import PASSWORD, TEST_DATABASE_URL, create_database, drop_database, make_app

VERSION_TABLE = "alembic_version"


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


def tables_in(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {VERSION_TABLE}


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(
                select(func.count()).select_from(Base.metadata.tables[name])
            ).scalar_one()
            for name in tables_in(connection)
        }


def insert_rows(engine: Engine, n: int) -> None:
    """Insert one row into every table the schema has at this revision, filling each column
    it has there."""
    with engine.begin() as connection:
        present = tables_in(connection)
        unknown = present - Base.metadata.tables.keys()
        assert not unknown, f"tables the models do not declare: {sorted(unknown)}"
        inserted: dict[str, dict[str, Any]] = {}
        for table in Base.metadata.sorted_tables:
            if table.name not in present:
                continue
            columns = {c["name"] for c in inspect(connection).get_columns(table.name)}
            row = {
                column.name: sample_value(column, n, inserted)
                for column in table.columns
                if column.name in columns
            }
            connection.execute(table.insert(), row)
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
        assert after and all(after[t] == before.get(t, 0) + 1 for t in after), after

    for revision in reversed(steps):
        assert migrate.current_revision(engine) == revision
        before = row_counts(engine)
        migrate.downgrade(engine, "-1")
        after = row_counts(engine)
        # Tables that survive a step keep their rows.
        assert all(after[t] == before[t] for t in after), (before, after)
    assert migrate.current_revision(engine) is None
    with engine.connect() as connection:
        assert tables_in(connection) == set()

    migrate.upgrade(engine)
    assert migrate.is_current(engine)
    assert set(row_counts(engine).values()) == {0}

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
