"""The thread that keeps a serving worker's ``ChangeFeed`` current (identity.changes).

On PostgreSQL it ``LISTEN``s on its own connection (or subscribes to Redis when
``change_channel_url`` names one), loads the subscribers' state, then loops: wait up to one
``HEARTBEAT`` for messages, hand them to the subscribers, read the generations and let the
subscribers catch up (``tick``), and mark the feed fresh. Any error marks the feed stale at
once, and the next connection starts with a full resync, since messages may have been
missed meanwhile. On SQLite (one host) it reads the generations every ``SQLITE_POLL``
seconds; there is no network round trip to save, so the subscribers are not loaded and
every check reads the database.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

from identity.changes import (
    CHANNEL,
    HEARTBEAT,
    RECONNECT_DELAY,
    SQLITE_POLL,
    ChangeFeed,
    generations_on,
    read_generations,
    reader,
)

log = logging.getLogger("identity.changes")


class ChangeListener:
    """One per serving worker; ``redis_url`` chooses Redis pub/sub as the channel."""

    def __init__(self, feed: ChangeFeed, engine: Engine, redis_url: str = "") -> None:
        self.feed = feed
        self.engine = engine
        self.redis_url = redis_url
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="identity-changes", daemon=True)

    def start(self) -> ChangeListener:
        if self.engine.dialect.name == "postgresql":
            self.feed.engine = self.engine
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.engine.dialect.name != "postgresql":
                    self._poll()
                elif self.redis_url:
                    self._subscribe()
                else:
                    self._listen()
            except Exception as error:  # noqa: BLE001 - connection lost: resync, retry
                self.feed.lost()
                log.warning(
                    "change listener disconnected",
                    extra={"event": "changes.disconnected", "error": type(error).__name__},
                )
                self._stop.wait(RECONNECT_DELAY)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.feed.update(read_generations(self.engine))
            self._stop.wait(SQLITE_POLL)

    def _connect(self) -> Any:
        """The listener's own autocommit connection (never one of the pool's: a read must
        not leave a transaction open for the life of the worker, holding locks that a
        migration would wait for), with TCP keepalives so a dead peer is noticed."""
        import psycopg  # noqa: PLC0415 - only with PostgreSQL; an SQLite install may lack it

        url = self.engine.url.set(drivername="postgresql")
        return psycopg.connect(
            url.render_as_string(hide_password=False),
            autocommit=True,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )

    def _listen(self) -> None:
        with self._connect() as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            read = reader(connection)
            # Loaded after LISTEN: no change can fall between the load and the wait.
            self.feed.resync(read)
            while not self._stop.is_set():
                self._heartbeat(connection)
                payloads = [n.payload for n in connection.notifies(timeout=HEARTBEAT, stop_after=1)]
                if payloads:  # and whatever else is queued already
                    payloads += [n.payload for n in connection.notifies(timeout=0.0)]
                    self.feed.dispatch(_split(payloads), read)

    def _subscribe(self) -> None:
        import redis  # noqa: PLC0415 - only with a Redis channel

        client = redis.Redis.from_url(
            self.redis_url, socket_connect_timeout=5, socket_timeout=HEARTBEAT * 2
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            with self._connect() as database:
                read = reader(database)
                self.feed.resync(read)
                while not self._stop.is_set():
                    self._heartbeat(database)
                    payloads = self._receive(pubsub)
                    if payloads:
                        self.feed.dispatch(_split(payloads), read)
        finally:
            pubsub.close()
            client.close()

    def _receive(self, pubsub: Any) -> list[str]:
        """Messages for up to one heartbeat (returning at the first ones). A PING answered
        within it proves the subscription alive; a silent Redis raises."""
        pubsub.ping()
        deadline = time.monotonic() + HEARTBEAT
        payloads: list[str] = []
        ponged = False
        while not (ponged and payloads):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not ponged:
                    raise ConnectionError("no answer from the Redis channel")
                break
            message = pubsub.get_message(timeout=remaining)
            if message is None:
                continue  # the timeout, or a subscription notice
            if message["type"] == "pong":
                ponged = True
            elif message["type"] == "message":
                data = message["data"]
                payloads.append(data.decode() if isinstance(data, bytes) else str(data))
        return payloads

    def _heartbeat(self, connection: Any) -> None:
        generations = generations_on(connection)
        if self.feed.needs_resync:  # a commit here could not apply its messages
            self.feed.resync(reader(connection))
        self.feed.tick(reader(connection))
        self.feed.update(generations)


def _split(payloads: list[str]) -> list[str]:
    return [line for payload in payloads for line in payload.split("\n") if line]


def redis_publisher(url: str) -> Any:
    """What ``ChangeFeed.publisher`` calls after a commit when the channel is Redis: set
    for every process that can commit (serving workers and commands alike)."""
    import redis  # noqa: PLC0415 - only with a Redis channel

    # Connected at the first publish. Short timeouts: a commit waits for its publish, and
    # if one fails the other workers catch up by their heartbeat.
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)

    def publish(payload: str) -> None:
        client.publish(CHANNEL, payload)

    return publish
