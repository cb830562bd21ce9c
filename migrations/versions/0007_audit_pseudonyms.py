"""audit trail without personal data in its chain: users as pseudonyms, personal details as a
salted digest; existing records converted and the chain re-hashed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:30:00

The hashing below is a copy of identity.audit's at this revision, frozen here on purpose:
a migration must compute what its revision meant, whatever later code does. The trail is
re-chained from the first record, so the hashes change; the conversion is logged with the
tip it started from. Users deleted before this revision (their ids are in records but no
longer in users) are treated as erased: their ids and the records' personal details go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
GENESIS = "0" * 64
PERSONAL_KEYS = ("email", "new_email", "old_email", "name")
BATCH = 1000

events = sa.table(
    "audit_events",
    sa.column("seq", sa.BigInteger()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("event", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("actor_id", sa.Uuid()),
    sa.column("subject_id", sa.Uuid()),
    sa.column("actor_ref", sa.String()),
    sa.column("subject_ref", sa.String()),
    sa.column("client_id", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("user_agent", sa.String()),
    sa.column("personal", sa.JSON()),
    sa.column("personal_digest", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("data", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
head = sa.table("audit_head", sa.column("id", sa.Integer()), sa.column("hash", sa.String()))
pseudonyms = sa.table(
    "audit_pseudonyms", sa.column("user_id", sa.Uuid()), sa.column("pseudonym", sa.String())
)
users = sa.table("users", sa.column("id", sa.Uuid()))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _iso(moment: datetime) -> str:
    # As identity.models.base.UTCDateTime reads it: aware, in UTC (SQLite's are naive).
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC).isoformat()
    return moment.astimezone(UTC).isoformat()


def _hash_v2(row: dict[str, Any], prev: str) -> str:
    fields = {
        "seq": row["seq"],
        "occurred_at": _iso(row["occurred_at"]),
        "event": row["event"],
        "outcome": row["outcome"],
        "actor": row["actor_ref"],
        "subject": row["subject_ref"],
        "client_id": row["client_id"],
        "request_id": row["request_id"],
        "data": row["data"],
        "personal_digest": row["personal_digest"],
    }
    return hashlib.sha256((prev + _canonical(fields)).encode()).hexdigest()


def _hash_v1(row: dict[str, Any], prev: str) -> str:
    fields = {
        "seq": row["seq"],
        "occurred_at": _iso(row["occurred_at"]),
        "event": row["event"],
        "outcome": row["outcome"],
        "actor_id": str(row["actor_id"]) if row["actor_id"] else None,
        "subject_id": str(row["subject_id"]) if row["subject_id"] else None,
        "client_id": row["client_id"],
        "ip": row["ip"],
        "user_agent": row["user_agent"],
        "request_id": row["request_id"],
        "data": row["data"],
    }
    return hashlib.sha256((prev + _canonical(fields)).encode()).hexdigest()


def _rechain(connection: sa.Connection, convert: Any, hash_of: Any) -> None:
    """Rewrite every record through ``convert`` and chain it again from genesis."""
    old_tip = connection.execute(sa.select(head.c.hash).where(head.c.id == 1)).scalar()
    prev, last, count = GENESIS, 0, 0
    while True:
        rows = connection.execute(
            sa.select(events).where(events.c.seq > last).order_by(events.c.seq).limit(BATCH)
        ).mappings()
        batch = [dict(row) for row in rows]
        if not batch:
            break
        for row in batch:
            values = convert(row)
            row.update(values)
            values["prev_hash"] = prev
            values["hash"] = prev = hash_of(row, prev)
            connection.execute(events.update().where(events.c.seq == row["seq"]).values(values))
            last, count = row["seq"], count + 1
    if count:
        connection.execute(head.update().where(head.c.id == 1).values(hash=prev))
    log.info("audit trail re-chained: %d records, previous tip %s", count, old_tip)


def upgrade() -> None:
    op.create_table(
        "audit_pseudonyms",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("pseudonym", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_audit_pseudonyms_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_audit_pseudonyms")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_audit_pseudonyms_pseudonym")),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("actor_ref", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("subject_ref", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("personal", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("personal_digest", sa.String(length=64), nullable=True))

    connection = op.get_bind()
    known = set(connection.execute(sa.select(users.c.id)).scalars())
    names: dict[Any, str] = {}

    def ref(user_id: Any) -> str | None:
        if user_id is None or user_id not in known:
            return None
        if user_id not in names:
            names[user_id] = secrets.token_hex(16)
            connection.execute(
                pseudonyms.insert().values(user_id=user_id, pseudonym=names[user_id])
            )
        return names[user_id]

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        data = dict(row["data"] or {})
        details = {key: data.pop(key) for key in PERSONAL_KEYS if key in data}
        gone = any(row[k] is not None and row[k] not in known for k in ("actor_id", "subject_id"))
        values: dict[str, Any] = {
            "actor_ref": ref(row["actor_id"]),
            "subject_ref": ref(row["subject_id"]),
            "data": data,
            "personal": sa.null(),  # SQL NULL: None would store JSON null
            "personal_digest": None,
        }
        if gone:  # a user deleted before this revision: erased, as deletion is now
            values.update(actor_id=None, subject_id=None, ip=None, user_agent=None)
        elif row["ip"] or row["user_agent"] or details:
            salt = secrets.token_hex(16)
            canonical = _canonical(
                {"ip": row["ip"], "user_agent": row["user_agent"], "data": details}
            )
            values["personal"] = {"salt": salt, "data": details}
            values["personal_digest"] = hashlib.sha256((salt + canonical).encode()).hexdigest()
        return values

    _rechain(connection, convert, _hash_v2)


def downgrade() -> None:
    def convert(row: dict[str, Any]) -> dict[str, Any]:
        details = (row["personal"] or {}).get("data", {})
        return {"data": {**(row["data"] or {}), **details}}

    _rechain(op.get_bind(), convert, _hash_v1)
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("personal_digest")
        batch.drop_column("personal")
        batch.drop_column("subject_ref")
        batch.drop_column("actor_ref")
    op.drop_table("audit_pseudonyms")
