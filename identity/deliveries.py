"""Notices that wait in a table for delivery to a client's endpoint (back-channel logout
tokens, Security Event Tokens): what their senders share.

Each serving worker sweeps the table. A row is leased before it is sent, so that two
workers never send it at once and a row leased by a worker that died is taken again when
its lease ends; no transaction is open while the client is called. A failed delivery is
retried after growing waits and given up after the last one. Rows survive restarts.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from identity.database import rowcount
from identity.models.base import utcnow

LEASE = timedelta(seconds=60)
# Waits after each failed attempt; after the last one the delivery is given up.
RETRIES = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
)
SWEEP_INTERVAL = 5.0
OK_STATUSES = range(200, 300)


def _available(model: Any, moment: datetime) -> Any:
    return (model.next_attempt_at <= moment) & or_(
        model.claimed_until.is_(None), model.claimed_until < moment
    )


def due(session: Session, model: Any, now: datetime | None = None, limit: int = 20) -> list[Any]:
    """The ids of rows due and not leased, oldest due first (the read ends its transaction)."""
    moment = now or utcnow()
    ids = list(
        session.execute(
            select(model.id)
            .where(_available(model, moment))
            .order_by(model.next_attempt_at)
            .limit(limit)
        ).scalars()
    )
    session.rollback()
    return ids


def lease(session: Session, model: Any, row_id: uuid.UUID, now: datetime | None = None) -> bool:
    """Take the row for one delivery attempt; False when another worker has it or it is
    not due. The caller commits before calling the client."""
    moment = now or utcnow()
    statement = (
        update(model)
        .where(model.id == row_id, _available(model, moment))
        .values(claimed_until=moment + LEASE)
    )
    return rowcount(session.execute(statement)) == 1


def done(session: Session, model: Any, row_id: uuid.UUID) -> None:
    """Delivered (or nothing left to deliver): the row goes. Committed here."""
    session.execute(delete(model).where(model.id == row_id))
    session.commit()


def failed(
    session: Session,
    model: Any,
    row_id: uuid.UUID,
    attempts: int,
    error: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Schedule the next attempt, or give the row up after the last: returns True when it
    was given up. Committed here."""
    if attempts >= len(RETRIES):
        session.execute(delete(model).where(model.id == row_id))
        session.commit()
        return True
    session.execute(
        update(model)
        .where(model.id == row_id)
        .values(
            attempts=attempts + 1,
            next_attempt_at=(now or utcnow()) + RETRIES[attempts],
            claimed_until=None,
            last_error=error[:200],
        )
    )
    session.commit()
    return False
