"""Column values as JSON, typed so that they come back exactly on either database.

A backup names each column's kind once, in its table's header line; each row is then a
JSON array. SQLite and PostgreSQL store the same model differently (a UUID as 32 hex
characters or as ``uuid``, a time as naive text or as ``timestamptz``, a flag as 0/1 or
as ``boolean``): a kind is what the model means, read and written through SQLAlchemy
types that do the storing, so a backup of one restores into the other.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.types import TypeEngine

from identity.models.base import UTCDateTime

# A JSON column may hold SQL NULL or JSON null; a backup keeps them apart: SQL NULL is
# null, any JSON value (null too) is wrapped in a one-element array.
KINDS: dict[str, Callable[[], TypeEngine[Any]]] = {
    "text": Text,
    # BIGINT binds: an INTEGER parameter would refuse what a BIGINT column holds.
    "int": BigInteger,
    "bool": Boolean,
    "uuid": Uuid,
    "datetime": UTCDateTime,
    "naive_datetime": DateTime,
    "bytes": LargeBinary,
    "json": lambda: JSON(none_as_null=True),
}


def kind_of(type_: TypeEngine[Any]) -> str | None:
    """The kind of a model's or a reflected column's type; None if a backup cannot hold it."""
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    # Order matters: Boolean is no Integer, but JSON and Uuid are told apart from String.
    checks: list[tuple[type[TypeEngine[Any]], str]] = [
        (Boolean, "bool"),
        (Integer, "int"),
        (Uuid, "uuid"),
        (JSON, "json"),
        (LargeBinary, "bytes"),
        (String, "text"),
    ]
    if isinstance(type_, DateTime):
        return "datetime" if type_.timezone else "naive_datetime"
    for cls, kind in checks:
        if isinstance(type_, cls):
            return kind
    return None


def typed_table(name: str, columns: list[tuple[str, str]]) -> Table:
    """A table of those columns, typed by kind: what a backup is read and restored with."""
    return Table(name, MetaData(), *(Column(column, KINDS[kind]()) for column, kind in columns))


def encode(kind: str, value: Any) -> Any:
    """A database value as JSON; for a JSON column ``value`` is (is SQL NULL, value)."""
    if kind == "json":
        is_null, inner = value
        return None if is_null else [inner]
    if value is None:
        return None
    if kind == "uuid":
        return str(value)
    if kind in ("datetime", "naive_datetime"):
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    return value


class BadValue(ValueError):
    """A backup value that does not fit its column's kind."""


def _datetime(value: Any, *, aware: bool) -> datetime:
    moment = datetime.fromisoformat(value)
    if (moment.tzinfo is not None) != aware:
        raise BadValue("a time with or without a time zone where the other was expected")
    return moment


def decode(kind: str, value: Any) -> Any:
    """The value to insert for a JSON value of a backup; BadValue when it does not fit."""
    if value is None:
        return None
    try:
        if kind == "json":
            if not isinstance(value, list) or len(value) != 1:
                raise BadValue("a JSON value is not wrapped")
            return JSON.NULL if value[0] is None else value[0]
        if kind == "uuid":
            return uuid.UUID(value)
        if kind == "datetime":
            return _datetime(value, aware=True)
        if kind == "naive_datetime":
            return _datetime(value, aware=False)
        if kind == "bytes":
            return base64.b64decode(value, validate=True)
    except (TypeError, ValueError, binascii.Error, AttributeError) as error:
        raise BadValue(str(error)) from None
    expected = {"text": str, "bool": bool, "int": int}[kind]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise BadValue(f"{type(value).__name__} where {kind} was expected")
    return value
