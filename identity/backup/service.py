"""Backing up every table in one consistent snapshot, and checking a backup.

``create`` reads the whole database in one transaction that sees a single state of it
while the server goes on writing (``identity.database.create_snapshot_engine``), so the
backup holds no grant without its user and client and an audit trail without a gap.
``verify`` reads a backup through without a database. Restoring is ``restoring``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, MetaData, Table, column, func, select, table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SAWarning

from identity.backup import container
from identity.backup.container import BackupError, Secret
from identity.backup.contents import Header, TableInfo, end_line, entries, row_line
from identity.backup.records import encode, kind_of, typed_table
from identity.models import Base

BATCH = 1000
VERSION_TABLE = "alembic_version"


class Progress:
    """Told how many rows there are, then of each batch done; shows nothing itself."""

    def start(self, rows: int) -> None:
        """The number of rows the whole operation goes through."""

    def advance(self, table: str, rows: int) -> None:
        """``rows`` more rows of ``table`` are done."""


def reflect(bind: Engine | Connection) -> MetaData:
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
        metadata = reflect(connection)
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


def read_entries(path: Path, secret: Secret) -> Iterator[Header | TableInfo | dict[str, Any]]:
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
    for entry in read_entries(path, secret):
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
