"""What a backup holds once decrypted: JSON lines.

The first line names the format, the schema revision, when and from which kind of
database it was taken, and each table with its number of rows, in foreign-key order. Each
table follows: one line with its columns and their kinds (identity.backup.records), then
one JSON array per row. A last line closes the backup with the total number of rows.
Reading checks all of it: the order, the counts, that every value fits its column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from identity.backup.container import BackupError
from identity.backup.records import KINDS, BadValue, decode

NAME = "identity-backup"
VERSION = 1


@dataclass(frozen=True)
class Header:
    revision: str
    created_at: str
    source: str
    tables: list[tuple[str, int]]

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.tables)

    def line(self) -> bytes:
        return _line(
            {
                "format": NAME,
                "version": VERSION,
                "revision": self.revision,
                "created_at": self.created_at,
                "source": self.source,
                "tables": [[name, rows] for name, rows in self.tables],
            }
        )


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: list[tuple[str, str]]
    rows: int

    def line(self) -> bytes:
        return _line({"table": self.name, "columns": self.columns, "rows": self.rows})


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def row_line(values: list[Any]) -> bytes:
    return _line(values)


def end_line(rows: int) -> bytes:
    return _line({"end": True, "rows": rows})


def _lines(pieces: Iterator[bytes]) -> Iterator[bytes]:
    buffer = b""
    for piece in pieces:
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        raise BackupError("the backup's contents end in the middle of a line")


def _parse(line: bytes | None, what: str) -> Any:
    if line is None:
        raise BackupError(f"the backup's contents end before {what}")
    try:
        return json.loads(line)
    except ValueError:
        raise BackupError(f"the backup's contents are not readable at {what}") from None


def _header(line: bytes | None) -> Header:
    value = _parse(line, "the header")
    if not isinstance(value, dict) or value.get("format") != NAME:
        raise BackupError("the backup's contents are not an identity backup")
    if value.get("version") != VERSION:
        raise BackupError(f"backup contents version {value.get('version')} cannot be read")
    try:
        tables = [(str(name), int(rows)) for name, rows in value["tables"]]
        return Header(str(value["revision"]), str(value["created_at"]), value["source"], tables)
    except (KeyError, TypeError, ValueError):
        raise BackupError("the backup's header is incomplete") from None


def _table(line: bytes | None, name: str, rows: int) -> TableInfo:
    value = _parse(line, f"table {name}")
    try:
        columns = [(str(column), str(kind)) for column, kind in value["columns"]]
        found = (value["table"], value["rows"])
    except (KeyError, TypeError, ValueError):
        raise BackupError(f"the backup's description of table {name} is incomplete") from None
    if found != (name, rows):
        raise BackupError(f"the backup does not hold table {name} where its header says")
    unknown = sorted({kind for _, kind in columns} - KINDS.keys())
    if unknown:
        raise BackupError(f"table {name} has columns of unknown kinds: {', '.join(unknown)}")
    return TableInfo(name, columns, rows)


def _row(line: bytes | None, table: TableInfo, number: int) -> dict[str, Any]:
    where = f"row {number + 1} of table {table.name}"
    values = _parse(line, where)
    if not isinstance(values, list) or len(values) != len(table.columns):
        raise BackupError(f"{where} does not have the table's {len(table.columns)} columns")
    row = {}
    for (column, kind), value in zip(table.columns, values, strict=True):
        try:
            row[column] = decode(kind, value)
        except BadValue as error:
            raise BackupError(f"{where}: column {column}: {error}") from None
    return row


def entries(pieces: Iterator[bytes]) -> Iterator[Header | TableInfo | dict[str, Any]]:
    """The header, then each table and its rows (as column-to-value dicts, ready to be
    inserted); a BackupError as soon as something is not as the header promised."""
    lines = _lines(pieces)
    header = _header(next(lines, None))
    yield header
    for name, rows in header.tables:
        table = _table(next(lines, None), name, rows)
        yield table
        for number in range(rows):
            yield _row(next(lines, None), table, number)
    end = _parse(next(lines, None), "its end")
    if end != {"end": True, "rows": header.rows}:
        raise BackupError("the backup's end does not match its header")
    if next(lines, None) is not None:
        raise BackupError("the backup has contents after its end")
