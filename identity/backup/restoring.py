"""Restoring a backup into an empty database (or over one, when asked).

The whole file is checked before the database is touched. Then the schema is made at the
backup's revision with Alembic, every row loaded in one transaction, the schema upgraded to
this version's newest, PostgreSQL's sequences set past the loaded rows, and the erasures the
replaced database knew kept. Re-applying the erasure ledger is the caller's
(``identity.privacy.erasure``), in the command's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Table, column, func, inspect, select, table, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Select

from identity import migrate
from identity.backup.container import BackupError, Secret
from identity.backup.contents import Header, TableInfo
from identity.backup.records import typed_table
from identity.backup.service import BATCH, VERSION_TABLE, Progress, read_entries, reflect, verify
from identity.models import Base, ErasureRecord

LOCK_TIMEOUT = 10


class NotEmpty(BackupError):
    """The database to restore into holds rows."""


@dataclass(frozen=True)
class Restored:
    header: Header
    upgraded_to: str | None  # the newest revision, when the backup's was older
    ledger_kept: int  # erasures the database knew and the backup did not
    sequences: int


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


def _drop_everything(engine: Engine) -> None:
    """Drop every table. On PostgreSQL a server still connected holds locks that DROP
    would wait for without end: after LOCK_TIMEOUT the restore stops, saying why."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}s'"))
        try:
            reflect(connection).drop_all(connection)
        except OperationalError as error:
            if "lock timeout" not in str(error.orig):
                raise
            raise BackupError(
                f"the database is in use: its tables could not be dropped within "
                f"{LOCK_TIMEOUT} seconds; stop every server of it first"
            ) from None


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

    for entry in read_entries(path, secret):
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
    checking: Progress | None = None,
    progress: Progress | None = None,
) -> Restored:
    """Restore the backup at ``path`` into the database of ``engine``, which must hold no
    rows unless ``replace``: then every table it has is dropped first (the erasures its
    ledger knows are kept). Nothing is touched unless the whole backup reads well:
    ``checking`` is told of that first pass, ``progress`` of the loading."""
    header = verify(path, secret, checking)
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
    _drop_everything(engine)
    migrate.upgrade(engine, header.revision)
    with engine.begin() as connection:
        # The migrations may have made rows (built-in roles); the backup has its own.
        for made_table in reversed(reflect(connection).sorted_tables):
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
