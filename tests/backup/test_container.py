"""The backup file on its own, without a database: what it encrypts comes back, and every
way of breaking it is named (a wrong passphrase or key, a chunk altered, dropped, moved or
cut short, bytes appended, a header edited); and each kind of column value comes back
exactly, JSON null apart from SQL NULL (REL-14: backups are protected)."""

from __future__ import annotations

import io
import os
import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import JSON

from identity.backup import container
from identity.backup.container import BackupError, Secret
from identity.backup.records import decode, encode

KEY = Secret(key=bytes(range(32)))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 bytes, so that a few kilobytes make many; and a cheap scrypt (the
    header carries its parameters, so reading follows whatever the file says)."""
    monkeypatch.setattr(container, "CHUNK", 64)
    monkeypatch.setattr(container, "SCRYPT_LOG_N", 10)


def sealed(plain: bytes, secret: Secret = KEY) -> bytes:
    sink = io.BytesIO()
    writer = container.Writer(sink, secret)
    for start in range(0, len(plain), 100):
        writer.write(plain[start : start + 100])
    writer.close()
    return sink.getvalue()


def opened(data: bytes, secret: Secret = KEY) -> bytes:
    return b"".join(container.read(io.BytesIO(data), secret))


def chunks(data: bytes) -> list[bytes]:
    """The length-prefixed chunks after the header, each with its prefix."""
    found, at = [], container.HEADER_SIZE
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        found.append(data[at : at + 4 + length])
        at += 4 + length
    return found


# Random text compresses poorly: many chunks.
PLAIN = os.urandom(3000).hex().encode()


def test_what_is_written_is_read_back_with_a_key_or_a_passphrase() -> None:
    data = sealed(PLAIN)
    assert len(chunks(data)) > 10
    assert opened(data) == PLAIN
    passphrase = Secret.from_passphrase("correct horse battery staple")
    assert opened(sealed(PLAIN, passphrase), passphrase) == PLAIN
    assert opened(sealed(b"")) == b""
    # A fresh salt each time: the same input never makes the same file.
    assert sealed(PLAIN)[:40] != sealed(PLAIN)[:40]


def test_a_wrong_passphrase_or_key_is_named_as_such() -> None:
    data = sealed(PLAIN, Secret.from_passphrase("correct horse battery staple"))
    with pytest.raises(BackupError, match="wrong passphrase"):
        opened(data, Secret.from_passphrase("correct horse battery stable"))
    with pytest.raises(BackupError, match="encrypted with a passphrase: give --passphrase-stdin"):
        opened(data, KEY)
    with pytest.raises(BackupError, match="wrong key"):
        opened(sealed(PLAIN), Secret(key=bytes(32)))
    with pytest.raises(BackupError, match="encrypted with a key file: give --key-file"):
        opened(sealed(PLAIN), Secret.from_passphrase("correct horse battery staple"))


def test_an_altered_byte_anywhere_fails() -> None:
    data = sealed(PLAIN)
    for at in (container.HEADER.size + 3, container.HEADER_SIZE + 10, len(data) // 2, -1):
        damaged = bytearray(data)
        damaged[at] ^= 1
        with pytest.raises(BackupError, match=r"wrong key|damaged|altered"):
            opened(bytes(damaged))
    # The salt is in the header: editing it fails the key check.
    damaged = bytearray(data)
    damaged[20] ^= 1
    with pytest.raises(BackupError, match="wrong key for this backup"):
        opened(bytes(damaged))


def test_chunks_dropped_moved_cut_or_appended_fail() -> None:
    data = sealed(PLAIN)
    header, parts = data[: container.HEADER_SIZE], chunks(data)
    swapped = header + parts[1] + parts[0] + b"".join(parts[2:])
    with pytest.raises(BackupError, match="chunk 1 fails authentication"):
        opened(swapped)
    dropped = header + parts[0] + b"".join(parts[2:])
    with pytest.raises(BackupError, match="chunk 2 fails authentication"):
        opened(dropped)
    without_last = header + b"".join(parts[:-1])
    with pytest.raises(BackupError, match="truncated"):
        opened(without_last)
    for cut in (len(data) - 1, len(data) // 2, container.HEADER_SIZE + 2, 30):
        with pytest.raises(BackupError, match="truncated"):
            opened(data[:cut])
    with pytest.raises(BackupError, match="data after its last chunk"):
        opened(data + parts[-1])
    other = sealed(PLAIN)  # another file's chunk, under another salt
    with pytest.raises(BackupError, match="fails authentication"):
        opened(header + chunks(other)[0] + b"".join(parts[1:]))


def test_not_a_backup_or_a_newer_format() -> None:
    with pytest.raises(BackupError, match="not an identity backup"):
        opened(b"PK\x03\x04 a zip file")
    newer = bytearray(sealed(PLAIN))
    newer[8] = 2
    with pytest.raises(BackupError, match="backup format 2"):
        opened(bytes(newer))
    greedy = bytearray(sealed(PLAIN, Secret.from_passphrase("correct horse battery staple")))
    greedy[10] = 40  # scrypt N = 2**40: refused, not attempted
    with pytest.raises(BackupError, match="key derivation parameters"):
        opened(bytes(greedy), Secret.from_passphrase("correct horse battery staple"))


def test_key_files_raw_or_hex(tmp_path: Path) -> None:
    raw, hexa, short = tmp_path / "raw", tmp_path / "hex", tmp_path / "short"
    raw.write_bytes(bytes(range(32)))
    hexa.write_text(bytes(range(32)).hex() + "\n")
    short.write_text("0123abcd\n")
    assert Secret.from_key_file(raw).key == Secret.from_key_file(hexa).key == bytes(range(32))
    with pytest.raises(BackupError, match="must hold 32 random bytes"):
        Secret.from_key_file(short)
    with pytest.raises(BackupError, match="cannot read the key file"):
        Secret.from_key_file(tmp_path / "missing")
    with pytest.raises(BackupError, match="empty"):
        Secret.from_passphrase("")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("datetime", datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)),
        ("datetime", datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=-5)))),
        ("naive_datetime", datetime(2026, 11, 30, 12, 0, 0, 1)),
        ("bytes", b"\x00\xff binary \n"),
        ("int", 2**62 + 1),
        ("int", -(2**40)),
        ("bool", False),
        ("text", 'naïve ✓ \n quotes "'),
        ("text", None),
    ],
)
def test_values_come_back_exactly(kind: str, value: object) -> None:
    import json

    assert decode(kind, json.loads(json.dumps(encode(kind, value)))) == value


def test_json_null_is_not_sql_null() -> None:
    assert encode("json", (True, None)) is None
    assert decode("json", None) is None
    assert encode("json", (False, None)) == [None]
    assert decode("json", [None]) is JSON.NULL
    nested = {"a": [1, None, {"b": True}], "n": 2**60}
    assert decode("json", encode("json", (False, nested))) == nested


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("uuid", "not-a-uuid"),
        ("datetime", "2026-11-30T12:00:00"),  # no time zone
        ("naive_datetime", "2026-11-30T12:00:00+00:00"),
        ("bytes", "***"),
        ("int", True),
        ("int", "1"),
        ("bool", 1),
        ("text", 5),
        ("json", {"unwrapped": True}),
    ],
)
def test_values_that_do_not_fit_their_kind_are_refused(kind: str, value: object) -> None:
    from identity.backup.records import BadValue

    with pytest.raises(BadValue):
        decode(kind, value)


def _contents(*lines: object) -> list[bytes]:
    import json

    return [b"".join(json.dumps(line).encode() + b"\n" for line in lines)]


HEADER = {
    "format": "identity-backup",
    "version": 1,
    "revision": "0008",
    "created_at": "2026-11-30T12:00:00+00:00",
    "source": "sqlite",
    "tables": [["users", 1]],
}
TABLE = {"table": "users", "columns": [["id", "uuid"], ["email", "text"]], "rows": 1}
ROW = ["12345678-1234-5678-1234-567812345678", "a@example.org"]
END = {"end": True, "rows": 1}


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ([], "end before the header"),
        (_contents({"format": "zip"}), "not an identity backup"),
        (_contents({**HEADER, "version": 2}), "version 2 cannot be read"),
        (_contents({**HEADER, "tables": 5}), "header is incomplete"),
        (_contents(HEADER), "end before table users"),
        (_contents(HEADER, {**TABLE, "table": "clients"}), "does not hold table users where"),
        (_contents(HEADER, {"table": "users"}), "description of table users is incomplete"),
        (_contents(HEADER, {**TABLE, "columns": [["id", "float"]]}), "unknown kinds: float"),
        (_contents(HEADER, TABLE), "end before row 1 of table users"),
        (_contents(HEADER, TABLE, ROW[:1]), "row 1 of table users does not have the table's 2"),
        (_contents(HEADER, TABLE, ["x", "a"]), "row 1 of table users: column id"),
        (_contents(HEADER, TABLE, ROW), "end before its end"),
        (_contents(HEADER, TABLE, ROW, {"end": True, "rows": 2}), "end does not match"),
        (_contents(HEADER, TABLE, ROW, END, END), "contents after its end"),
        ([_contents(HEADER, TABLE, ROW, END)[0] + b"{"], "in the middle of a line"),
        ([b"{not json\n"], "not readable at the header"),
    ],
)
def test_contents_that_do_not_match_their_header_are_refused(
    pieces: list[bytes], message: str
) -> None:
    """Beyond what the encryption proves: the contents are what their header promises."""
    from identity.backup.contents import entries

    with pytest.raises(BackupError, match=message):
        list(entries(iter(pieces)))


def test_contents_as_promised_read_as_rows() -> None:
    from identity.backup.contents import Header, TableInfo, entries

    found = list(entries(iter(_contents(HEADER, TABLE, ROW, END))))
    assert isinstance(found[0], Header) and found[0].rows == 1
    assert isinstance(found[1], TableInfo) and found[1].columns == [
        ("id", "uuid"),
        ("email", "text"),
    ]
    assert found[2] == {"id": uuid.UUID(ROW[0]), "email": "a@example.org"}
