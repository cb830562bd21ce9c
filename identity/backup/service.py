"""Backing up every table in one consistent snapshot, checking a backup, restoring one.

``create`` reads the whole database in one transaction that sees a single state of it
while the server goes on writing (``identity.database.create_snapshot_engine``), so the
backup holds no grant without its user and client and an audit trail without a gap.
``restore`` checks the whole file before it touches the database, then builds the schema
at the backup's revision with Alembic, loads every row in one transaction, upgrades the
schema to this version's newest and sets PostgreSQL's sequences past the loaded rows.
Re-applying the erasure ledger is the caller's (``identity.privacy.erasure``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, Table, column, func, inspect, select, table, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SAWarning
from sqlalchemy.sql import Select

from identity import migrate
from identity.backup import container
from identity.backup.container import BackupError, Secret
from identity.backup.contents import Header, TableInfo, end_line, entries, row_line
from identity.backup.records import encode, kind_of, typed_table
from identity.models import Base, ErasureRecord

BATCH = 1000
VERSION_TABLE = "alembic_version"


class Progress:
    """Told how many rows there are, then of each batch done; shows nothing itself."""

    def start(self, rows: int) -> None:
        """The number of rows the whole operation goes through."""

    def advance(self, table: str, rows: int) -> None:
        """``rows`` more rows of ``table`` are done."""


class NotEmpty(BackupError):
    """The database to restore into holds rows."""


@dataclass(frozen=True)
class Restored:
    header: Header
    upgraded_to: str | None  # the newest revision, when the backup's was older
    ledger_kept: int  # erasures the database knew and the backup did not
    sequences: int


def _reflect(bind: Engine | Connection) -> MetaData:
    """The tables the database has, as it reports them. SQLAlchemy warns that it skips
    the expression-based indexes; neither a backup nor a restore needs them (Alembic
    makes the schema), so that warning is not shown to the operator."""
    metadata = MetaData()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        metadata.reflect(bind)
    return metadata


# Creating -----------------------------------------------------------------------------------


def _columns(reflected: Table) -> list[tuple[str, str]]:
    """Each column with its kind: the model's type where the models have the column (it
    says what a CHAR(32) of SQLite means), else the type the database reports."""
    model = Base.metadata.tables.get(reflected.name)
    columns = []
    for found in reflected.columns:
        known = model.columns.get(found.name) if model is not None else None
        kind = kind_of((known if known is not None else found).type)
        if kind is None:
            raise BackupError(
                f"column {reflected.name}.{found.name} has a type a backup cannot hold "
                f"({found.type})"
            )
        columns.append((found.name, kind))
    return columns


def _dump(connection: Connection, info: TableInfo, order: list[str]) -> Iterator[bytes]:
    typed = typed_table(info.name, info.columns)
    json_columns = [name for name, kind in info.columns if kind == "json"]
    statement = select(
        *typed.columns, *(typed.c[name].is_(None).label(f"null {name}") for name in json_columns)
    ).order_by(*(typed.c[name] for name in order))
    result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(statement)
    for row in result:
        values = row._mapping
        yield row_line(
            [
                encode(
                    kind, (values[f"null {name}"], values[name]) if kind == "json" else values[name]
                )
                for name, kind in info.columns
            ]
        )


def create(
    engine: Engine, sink: IO[bytes], secret: Secret, progress: Progress | None = None
) -> Header:
    """Write a backup of every table to ``sink``; ``engine`` is a snapshot engine."""
    progress = progress or Progress()
    writer = container.Writer(sink, secret)
    with engine.connect() as connection, connection.begin():
        # The first read fixes the snapshot; everything below reads the same state.
        revision = connection.execute(
            select(column("version_num")).select_from(table(VERSION_TABLE))
        ).scalar()
        metadata = _reflect(connection)
        tables = [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]
        infos = [
            TableInfo(
                t.name,
                _columns(t),
                connection.execute(select(func.count()).select_from(t)).scalar_one(),
            )
            for t in tables
        ]
        header = Header(
            revision=str(revision),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            source=connection.dialect.name,
            tables=[(info.name, info.rows) for info in infos],
        )
        progress.start(header.rows)
        writer.write(header.line())
        for reflected, info in zip(tables, infos, strict=True):
            writer.write(info.line())
            order = [c.name for c in reflected.primary_key.columns] or [
                c.name for c in reflected.columns
            ]
            done = 0
            for line in _dump(connection, info, order):
                writer.write(line)
                done += 1
                if done % BATCH == 0:
                    progress.advance(info.name, BATCH)
            if done != info.rows:  # only if the snapshot were not one
                raise BackupError(f"table {info.name} changed while it was read")
            progress.advance(info.name, done % BATCH)
    writer.write(end_line(header.rows))
    writer.close()
    return header


# Checking -----------------------------------------------------------------------------------


def _entries(path: Path, secret: Secret) -> Iterator[Header | TableInfo | dict[str, Any]]:
    try:
        with path.open("rb") as source:
            yield from entries(container.read(source, secret))
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None


def verify(path: Path, secret: Secret, progress: Progress | None = None) -> Header:
    """Decrypt and authenticate every chunk, read every row: the header when all is well,
    a BackupError saying what is wrong otherwise. Touches no database."""
    progress = progress or Progress()
    header: Header | None = None
    name, done = "", 0
    for entry in _entries(path, secret):
        if isinstance(entry, Header):
            header = entry
            progress.start(entry.rows)
        elif isinstance(entry, TableInfo):
            progress.advance(name, done)
            name, done = entry.name, 0
        else:
            done += 1
            if done == BATCH:
                progress.advance(name, done)
                done = 0
    progress.advance(name, done)
    assert header is not None  # entries() begins with it or raises
    return header


# Restoring ----------------------------------------------------------------------------------


def _occupied(engine: Engine) -> dict[str, int]:
    """The tables of the database that hold rows, with their counts."""
    with engine.connect() as connection:
        names = [n for n in inspect(connection).get_table_names() if n != VERSION_TABLE]
        counts = {
            name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
            for name in names
        }
    return {name: rows for name, rows in sorted(counts.items()) if rows}


def _current_ledger(engine: Engine) -> list[dict[str, Any]]:
    """The erasure ledger of the database being replaced, when it is at this version's
    schema: erasures newer than the backup must be repeated after it is restored."""
    if migrate.current_revision(engine) != migrate.head_revision(engine):
        return []
    ledger = Base.metadata.tables[ErasureRecord.__tablename__]
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(ledger))]


def _keep_ledger(connection: Connection, rows: list[dict[str, Any]]) -> int:
    ledger = Base.metadata.tables[ErasureRecord.__tablename__]
    present = set(connection.execute(select(ledger.c.receipt_id)).scalars())
    missing = [row for row in rows if row["receipt_id"] not in present]
    if missing:
        connection.execute(ledger.insert(), missing)
    return len(missing)


SERIAL_COLUMNS = text(
    "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), "
    "column_name) FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"
)


def reset_sequences(connection: Connection) -> int:
    """PostgreSQL: set each sequence behind a serial or identity column past the largest
    value loaded, so the next row does not collide with a restored one."""
    reset = 0
    for table_name, name, sequence in connection.execute(SERIAL_COLUMNS).all():
        if sequence is None:
            continue
        largest: Select[tuple[Any]] = select(func.max(column(name))).select_from(table(table_name))
        connection.execute(
            select(func.setval(sequence, func.coalesce(largest.scalar_subquery(), 0) + 1, False))
        )
        reset += 1
    return reset


def _load(connection: Connection, path: Path, secret: Secret, progress: Progress) -> None:
    existing = set(inspect(connection).get_table_names())
    target: Table | None = None
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if target is None or not batch:
            return
        try:
            connection.execute(target.insert(), batch)
        except DBAPIError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            raise BackupError(f"restoring table {target.name} failed: {reason}") from None
        progress.advance(target.name, len(batch))
        batch.clear()

    for entry in _entries(path, secret):
        if isinstance(entry, Header):
            progress.start(entry.rows)
        elif isinstance(entry, TableInfo):
            flush()
            if entry.name not in existing:
                raise BackupError(f"the schema has no table {entry.name}, which the backup holds")
            target = typed_table(entry.name, entry.columns)
        else:
            batch.append(entry)
            if len(batch) >= BATCH:
                flush()
    flush()


def restore(
    engine: Engine,
    path: Path,
    secret: Secret,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> Restored:
    """Restore the backup at ``path`` into the database of ``engine``, which must hold no
    rows unless ``replace``: then every table it has is dropped first (the erasures its
    ledger knows are kept). Nothing is touched unless the whole backup reads well."""
    header = verify(path, secret)
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    try:
        script.get_revision(header.revision)
    except CommandError:
        raise BackupError(
            f"the backup's schema revision {header.revision} is unknown to this version of "
            "identity (a newer version made it)"
        ) from None
    occupied = _occupied(engine)
    if occupied and not replace:
        tables = ", ".join(f"{name} ({rows})" for name, rows in occupied.items())
        raise NotEmpty(f"the database is not empty: rows in {tables}")
    ledger = _current_ledger(engine) if occupied else []
    _reflect(engine).drop_all(engine)
    migrate.upgrade(engine, header.revision)
    with engine.begin() as connection:
        # The migrations may have made rows (built-in roles); the backup has its own.
        for made_table in reversed(_reflect(connection).sorted_tables):
            if made_table.name != VERSION_TABLE:
                connection.execute(made_table.delete())
        _load(connection, path, secret, progress or Progress())
    head = migrate.head_revision(engine)
    if header.revision != head:
        migrate.upgrade(engine, "head")
    with engine.begin() as connection:
        kept = _keep_ledger(connection, ledger) if ledger else 0
        sequences = reset_sequences(connection) if connection.dialect.name == "postgresql" else 0
    return Restored(
        header,
        upgraded_to=head if header.revision != head else None,
        ledger_kept=kept,
        sequences=sequences,
    )
