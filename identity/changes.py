"""Change notifications: how every process and host learns at once that a cache is stale.

Whatever changes what a cache holds (signing keys, clients) calls ``publish(session, topic)``
in its own transaction: it bumps the topic's row in ``change_generations`` and, on
PostgreSQL, sends ``NOTIFY identity_changes`` (delivered when, and only if, the transaction
commits). In each serving worker a ``ChangeListener`` thread keeps ``ChangeFeed`` current:
on PostgreSQL it waits on ``LISTEN`` and re-reads the generations when notified and at
least every ``HEARTBEAT`` seconds; on SQLite (one host) it reads them every
``SQLITE_POLL`` seconds.

A cache compares the generation it loaded with the feed's. The feed counts as ``fresh``
only while its listener has read the table within ``STALE_AFTER`` seconds; otherwise (no
listener, as in commands and tests, or a lost connection) a cache must not trust itself for
longer than ``FALLBACK_TTL``: a lost notification never keeps a retired key alive for long.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from identity.database import upsert
from identity.models.base import utcnow
from identity.models.change import ChangeGeneration

log = logging.getLogger("identity.changes")

CHANNEL = "identity_changes"
KEYS = "keys"
CLIENTS = "clients"
RBAC = "rbac"
HEARTBEAT = 1.0
SQLITE_POLL = 0.25
STALE_AFTER = 3.0
FALLBACK_TTL = 1.0
RECONNECT_DELAY = 1.0


def publish(session: Session, topic: str) -> None:
    """Mark ``topic`` changed for every process once this transaction commits. This
    process's caches learn it at the commit (``PUBLISHED``, read by the unit of work),
    the others from the listener."""
    session.info.setdefault(PUBLISHED, set()).add(topic)
    upsert(
        session,
        ChangeGeneration,
        {"topic": topic, "generation": 1, "changed_at": utcnow()},
        index=["topic"],
        update={"generation": ChangeGeneration.generation + 1, "changed_at": utcnow()},
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic}
        )


# The key in ``Session.info`` of the topics its transaction changed.
PUBLISHED = "identity.changes.published"


def read_generations(engine: Engine) -> dict[str, int]:
    """The generations, read outside any transaction: on SQLite the engine's transactions
    begin IMMEDIATE, and a poll several times a second must not take the write lock."""
    connection = engine.raw_connection()
    try:
        return _generations_on(connection)
    finally:
        connection.close()


class ChangeFeed:
    """This process's view of the generations; one per app, shared by its caches."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._synced_at = float("-inf")
        self._local = 0

    def generation(self, topic: str) -> int:
        return self._generations.get(topic, 0)

    @property
    def fresh(self) -> bool:
        """Whether a listener has confirmed the generations lately."""
        return time.monotonic() - self._synced_at < STALE_AFTER

    def ttl(self, trusted: float) -> float:
        """How long a cache entry may be used: ``trusted`` while fresh, else briefly."""
        return trusted if self.fresh else FALLBACK_TTL

    def changed_here(self, topics: set[str]) -> None:
        """This process committed changes to ``topics``: its cache entries of them are
        stale now, before the listener hears of it. A negative generation matches no
        entry; the listener's next update brings the real one."""
        self._local -= 1
        self._generations = {**self._generations, **dict.fromkeys(topics, self._local)}

    def update(self, generations: dict[str, int]) -> None:
        self._generations = generations  # replaced whole: readers never see half an update
        self._synced_at = time.monotonic()


class ChangeListener:
    """The thread that keeps a ChangeFeed current (one per serving worker)."""

    def __init__(self, feed: ChangeFeed, engine: Engine) -> None:
        self.feed = feed
        self.engine = engine
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="identity-changes", daemon=True)

    def start(self) -> ChangeListener:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.engine.dialect.name == "postgresql":
                    self._listen()
                else:
                    self._poll()
            except Exception as error:  # noqa: BLE001 - connection lost: feed goes stale, retry
                log.warning(
                    "change listener disconnected",
                    extra={"event": "changes.disconnected", "error": type(error).__name__},
                )
                self._stop.wait(RECONNECT_DELAY)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.feed.update(read_generations(self.engine))
            self._stop.wait(SQLITE_POLL)

    def _listen(self) -> None:
        import psycopg  # noqa: PLC0415 - only with PostgreSQL; an SQLite install may lack it

        url = self.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            while not self._stop.is_set():
                # Read after LISTEN, so no change can fall between the read and the wait.
                self.feed.update(_generations_on(connection))
                for _ in connection.notifies(timeout=HEARTBEAT, stop_after=1):
                    pass


def _generations_on(connection: Any) -> dict[str, int]:
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT topic, generation FROM change_generations")
        return {topic: int(generation) for topic, generation in cursor.fetchall()}
    finally:
        cursor.close()
