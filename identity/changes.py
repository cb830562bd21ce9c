"""Change notifications: how every process and host learns at once that a cache is stale.

Two kinds of news travel on one channel:

* **Topics** (signing keys, clients, the policy): whatever changes one calls
  ``publish(session, topic)`` in its own transaction, which bumps the topic's row in
  ``change_generations``. A cache compares the generation it loaded with the feed's.
* **Messages** naming one thing (``rev <key>``: a token revocation; ``user <id>``: a user's
  state or claims): ``notify(session, message)``. Subscribers (``identity.revocation_state``,
  the UserInfo profiles) re-read that one row from the database, so a message is only ever
  a hint: one whose change was rolled back changes nothing.

The channel is PostgreSQL's ``NOTIFY identity_changes`` (sent in the transaction, delivered
when, and only if, it commits) or, when ``change_channel_url`` names one, Redis pub/sub
(published just after the commit, ``ChangeFeed.committed``). The process that commits applies
its own messages at once, before its next request can ask. ``identity.change_listener`` runs
the thread that keeps a worker's feed current.

The feed counts as ``fresh`` only while its listener has confirmed the channel and read the
generations within ``STALE_AFTER`` seconds; otherwise (no listener, as in commands and tests,
a lost connection, a stalled thread) caches must not trust themselves for longer than
``FALLBACK_TTL``, and the revocation state is not used at all: every check reads the
database until the listener has resynchronised. A lost notification never keeps a revoked
token or a retired key alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from identity.database import upsert
from identity.models.base import utcnow
from identity.models.change import ChangeGeneration
from identity.models.user import User

log = logging.getLogger("identity.changes")

CHANNEL = "identity_changes"
KEYS = "keys"
CLIENTS = "clients"
RBAC = "rbac"
HEARTBEAT = 1.0  # the listener confirms the channel at least this often
SQLITE_POLL = 0.25
STALE_AFTER = 2.0  # two heartbeats missed: stop trusting what the channel says
FALLBACK_TTL = 1.0
RECONNECT_DELAY = 1.0
MAX_MESSAGE = 7000  # PostgreSQL's NOTIFY payload limit is 8000 bytes

# The keys in ``Session.info`` of what its transaction changed: topics (``PUBLISHED``,
# applied to this process's feed by the unit of work) and messages (``MESSAGES``).
PUBLISHED = "identity.changes.published"
MESSAGES = "identity.changes.messages"
# The ``ChangeFeed`` a session's commits report to (set by the unit of work and commands).
FEED = "identity.changes.feed"

# A DB-API query: SQL with %s placeholders (psycopg) and its parameters, to rows.
Read = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


class Subscriber(Protocol):
    """What a per-process state needs from the feed's listener."""

    def resync(self, read: Read) -> None:
        """Load everything: at start and after any gap in the channel."""

    def receive(self, messages: list[str], read: Read) -> None:
        """Messages from any process (this one's included): re-read what they name."""

    def tick(self, read: Read) -> None:
        """Every heartbeat: catch up on what a lost message could have missed."""


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
    notify(session, topic)


def notify(session: Session, message: str) -> None:
    """Send ``message`` to every process once this transaction commits."""
    session.info.setdefault(MESSAGES, []).append(message)
    if session.get_bind().dialect.name == "postgresql":
        # Delivered at the commit, never if this transaction (or the savepoint) is undone.
        session.execute(
            text("SELECT pg_notify(:channel, :message)"), {"channel": CHANNEL, "message": message}
        )


# What a user's message announces: whether the account may hold tokens, and its claims.
USER_STATE = ("email", "name", "email_verified_at", "updated_at", "disabled_at")


def watch_sessions() -> None:
    """Hook every SQLAlchemy session of this process, the app's and the commands' alike:
    a flush that changes a user's state or claims (or deletes the user) sends
    ``user <id>``, whichever code path did it; at the commit the messages go to the
    session's feed (``FEED`` in ``Session.info``), which publishes them (Redis) and applies
    them here; a rollback drops them."""
    for name, listener in (
        ("after_flush", _users_flushed),
        ("after_commit", _committed),
        ("after_rollback", _rolled_back),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _committed(session: Session) -> None:
    # SQLAlchemy calls this for a released savepoint too: that is not a commit yet.
    if session.in_nested_transaction():
        return
    messages = session.info.pop(MESSAGES, None)
    feed = session.info.get(FEED)
    if messages and feed is not None:
        feed.committed(messages)


def _rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's keep the rest's
        session.info.pop(MESSAGES, None)


def _users_flushed(session: Session, context: Any) -> None:
    changed = [
        user
        for user in session.dirty
        if isinstance(user, User)
        and any(inspect(user).attrs[name].history.has_changes() for name in USER_STATE)
    ]
    changed += [user for user in session.deleted if isinstance(user, User)]
    for user in changed:
        notify(session, f"user {user.id}")


def read_generations(engine: Engine) -> dict[str, int]:
    """The generations, read outside any transaction: on SQLite the engine's transactions
    begin IMMEDIATE, and a poll several times a second must not take the write lock."""
    connection = engine.raw_connection()
    try:
        return generations_on(connection)
    finally:
        connection.close()


def generations_on(connection: Any) -> dict[str, int]:
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT topic, generation FROM change_generations")
        return {topic: int(generation) for topic, generation in cursor.fetchall()}
    finally:
        cursor.close()


def reader(connection: Any) -> Read:
    """A ``Read`` over one DB-API connection."""

    def read(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    return read


class ChangeFeed:
    """This process's view of the channel; one per app, shared by its caches."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._synced_at = float("-inf")
        self._local = 0
        self.subscribers: list[Subscriber] = []
        # Set by the listener when it starts (serving workers only): where this process's
        # own messages are re-read at the commit, and where they are published.
        self.engine: Engine | None = None
        self.publisher: Callable[[str], None] | None = None
        self.lock = threading.Lock()  # subscribers' updates: the listener and committers
        self.needs_resync = False  # set by ``lost``: the listener reloads at its next beat

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def generation(self, topic: str) -> int:
        return self._generations.get(topic, 0)

    @property
    def fresh(self) -> bool:
        """Whether a listener has confirmed the channel lately."""
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

    def lost(self) -> None:
        """The channel broke, or a change could not be applied here: stop trusting it now
        rather than after ``STALE_AFTER``, until the listener has reloaded everything."""
        self._synced_at = float("-inf")
        self.needs_resync = True

    def committed(self, messages: list[str]) -> None:
        """A transaction of this process committed with ``messages``: publish them (Redis)
        and apply them here before this process answers anything else."""
        if self.publisher is not None:
            try:
                for batch in batches(messages):
                    self.publisher(batch)
            except Exception as error:  # noqa: BLE001 - committed already; others catch up
                # The other processes' listeners read recent revocations every heartbeat.
                log.warning(
                    "change not published",
                    extra={"event": "changes.publish_failed", "error": type(error).__name__},
                )
        if self.engine is not None and self.subscribers:
            try:
                connection = self.engine.raw_connection()
                try:
                    self.dispatch(messages, reader(connection))
                finally:
                    connection.close()
            except Exception as error:  # noqa: BLE001 - committed already: never fail the answer
                # Not applied here: stop trusting memory until the listener has reloaded.
                self.lost()
                log.warning(
                    "change not applied",
                    extra={"event": "changes.apply_failed", "error": type(error).__name__},
                )

    def dispatch(self, messages: list[str], read: Read) -> None:
        with self.lock:
            for subscriber in self.subscribers:
                subscriber.receive(messages, read)

    def resync(self, read: Read) -> None:
        with self.lock:
            self.needs_resync = False
            for subscriber in self.subscribers:
                subscriber.resync(read)

    def tick(self, read: Read) -> None:
        with self.lock:
            for subscriber in self.subscribers:
                subscriber.tick(read)


def batches(messages: list[str]) -> list[str]:
    """Messages joined by newlines into payloads that fit one notification."""
    out: list[str] = []
    current = ""
    for message in messages:
        if current and len(current) + 1 + len(message) > MAX_MESSAGE:
            out.append(current)
            current = ""
        current = f"{current}\n{message}" if current else message
    if current:
        out.append(current)
    return out
