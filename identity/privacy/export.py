"""A person's data export (GDPR Art. 15 and 20): what it holds, driven by the inventory.

``collect`` gathers, for each table with rows about the person, every column the
inventory marks exported (never a hash, secret or sealed value), plus the applications
those rows name. ``schema`` is the JSON Schema of the result (docs/export-schema.json,
published with each bundle). identity/privacy/bundle.py packs both into the signed ZIP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON

from identity.models.base import Base, utcnow
from identity.models.oauth import Client
from identity.models.user import User
from identity.privacy.inventory import INVENTORY, exported_columns, exported_tables

FORMAT = "identity-export/1"
# How a stored value becomes an exported one, where it is not the value itself.
SHAPES: dict[tuple[str, str], Callable[[Any], Any]] = {
    # The audit record's personal details, without the salt that keeps them out of the chain.
    ("audit_events", "personal"): lambda value: (value or {}).get("data"),
}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _rows(session: Session, table: str, user_id: uuid.UUID) -> list[dict[str, Any]]:
    model = Base.metadata.tables[table]
    columns = exported_columns(table)
    owner = model.c[INVENTORY[table].owner or ""]
    match = owner == user_id
    if table == "audit_events":  # the records about the person, and those of their acts
        match = or_(match, model.c.actor_id == user_id)
    order = model.c.seq if table == "audit_events" else model.primary_key.columns.values()[0]
    extra = (
        [model.c.subject_id.label("about"), model.c.actor_id.label("by")]
        if table == "audit_events"
        else []
    )
    statement = select(*(model.c[c] for c in columns), *extra).where(match).order_by(order)
    rows = []
    for row in session.execute(statement).mappings():
        shaped = {c: _json(SHAPES.get((table, c), lambda v: v)(row[c])) for c in columns}
        if extra and row["about"] != user_id:
            # The person acted on someone else (or no one): the emails and names the record
            # names are not theirs to have (GDPR-02).
            shaped["personal"] = None
        if extra and row["by"] != user_id:
            # Someone else acted (an operator, a stranger guessing the password): the
            # address and browser are theirs, not the person's.
            shaped["ip"] = shaped["user_agent"] = None
        rows.append(shaped)
    return rows


def sections(session: Session, user: User) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each exported table's rows about the person, one table at a time (for progress)."""
    for table in exported_tables():
        yield table, _rows(session, table, user.id)


def collect(
    session: Session,
    user: User,
    issuer: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything exportable about ``user``, as ``schema()`` describes."""
    data: dict[str, list[dict[str, Any]]] = {}
    for table, rows in sections(session, user):
        data[table] = rows
        if progress is not None:
            progress(table)
    named = {row["client_pk"] for rows in data.values() for row in rows if row.get("client_pk")}
    clients = session.execute(
        select(Client.id, Client.client_id, Client.name).where(
            Client.id.in_([uuid.UUID(pk) for pk in named])
        )
    ).all()
    return {
        "format": FORMAT,
        "issuer": issuer,
        "subject": str(user.id),
        "generated_at": utcnow().isoformat(),
        "clients": sorted(
            ({"client_pk": str(pk), "client_id": cid, "name": name} for pk, cid, name in clients),
            key=lambda c: c["client_id"],
        ),
        "data": data,
    }


def _type_of(table: str, column: str) -> dict[str, Any]:
    sql_type = Base.metadata.tables[table].c[column].type
    impl = getattr(sql_type, "impl", sql_type)
    nullable = Base.metadata.tables[table].c[column].nullable
    if (table, column) in SHAPES or isinstance(impl, JSON):
        kind: Any = ["object", "array", "string", "number", "boolean"]
    elif isinstance(impl, Boolean):
        kind = "boolean"
    elif isinstance(impl, Integer):
        kind = "integer"
    else:  # text, times (ISO 8601) and ids
        kind = "string"
    kinds = kind if isinstance(kind, list) else [kind]
    return {"type": [*kinds, "null"] if nullable or (table, column) in SHAPES else kind}


def schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``collect``'s result."""
    tables = {
        table: {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {c: _type_of(table, c) for c in exported_columns(table)},
                "required": exported_columns(table),
                "additionalProperties": False,
            },
        }
        for table in exported_tables()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://identity.invalid/export-schema/1",
        "title": "identity data export",
        "type": "object",
        "required": ["format", "issuer", "subject", "generated_at", "clients", "data"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "issuer": {"type": "string"},
            "subject": {"type": "string"},
            "generated_at": {"type": "string"},
            "clients": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "client_pk": {"type": "string"},
                        "client_id": {"type": "string"},
                        "name": {"type": "string"},
                    },
                    "required": ["client_pk", "client_id", "name"],
                    "additionalProperties": False,
                },
            },
            "data": {
                "type": "object",
                "properties": tables,
                "required": list(tables),
                "additionalProperties": False,
            },
        },
    }
