"""The change feed (identity.changes): generations, the listener thread, and the fallback
that keeps caches honest when the listener is not heard from."""

from __future__ import annotations

import time
from typing import Any

from identity import changes
from identity.change_listener import ChangeListener


def publish_and_commit(app: Any, topic: str) -> None:
    from identity.extensions import db

    with app.app_context():
        changes.publish(db.session, topic)
        db.session.commit()


def generations(app: Any) -> dict[str, int]:
    from identity.extensions import db

    with app.app_context():
        return changes.read_generations(db.engine)


def test_publish_bumps_the_topic_only_when_the_transaction_commits(app):
    """A published change counts once committed; a rolled-back one never does."""
    from identity.extensions import db

    before = generations(app).get(changes.KEYS, 0)
    with app.app_context():
        changes.publish(db.session, changes.KEYS)
        db.session.rollback()
    assert generations(app).get(changes.KEYS, 0) == before
    publish_and_commit(app, changes.KEYS)
    publish_and_commit(app, changes.KEYS)
    assert generations(app)[changes.KEYS] == before + 2
    assert generations(app).get(changes.CLIENTS, 0) == 0


def test_listener_hears_a_change_without_waiting_for_its_heartbeat(app, monkeypatch):
    """A running listener updates the feed within a second of the commit, though its
    heartbeat is set far longer (PostgreSQL: NOTIFY wakes it; SQLite: its poll)."""
    from identity.extensions import db

    monkeypatch.setattr(changes, "HEARTBEAT", 30.0)
    feed = changes.ChangeFeed()
    assert not feed.fresh
    with app.app_context():
        listener = ChangeListener(feed, db.engine).start()
    try:
        deadline = time.monotonic() + 5
        while not feed.fresh:
            assert time.monotonic() < deadline, "the listener never read the generations"
            time.sleep(0.01)
        seen = feed.generation(changes.CLIENTS)
        publish_and_commit(app, changes.CLIENTS)
        committed = time.monotonic()
        while feed.generation(changes.CLIENTS) == seen:
            assert time.monotonic() - committed < 1.0, "no change heard within a second"
            time.sleep(0.01)
    finally:
        listener.stop()


def test_a_feed_nobody_confirms_lets_caches_trust_themselves_only_briefly(monkeypatch):
    """Without a listener (commands, or a lost connection) a cache entry lives at most
    FALLBACK_TTL; a confirmed feed allows the cache's own, longer lifetime."""
    feed = changes.ChangeFeed()
    assert feed.ttl(300.0) == changes.FALLBACK_TTL
    feed.update({changes.KEYS: 1})
    assert feed.fresh and feed.ttl(300.0) == 300.0
    later = time.monotonic() + changes.STALE_AFTER + 1
    monkeypatch.setattr(changes.time, "monotonic", lambda: later)
    assert not feed.fresh and feed.ttl(300.0) == changes.FALLBACK_TTL


def test_key_ring_reloads_when_the_keys_generation_moves(app):
    """A ring loaded at one generation is replaced as soon as the feed shows another, even
    while the feed is fresh and the ring young."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    store = app.extensions["identity"].keys
    with app.app_context():
        ensure_keys(db.session, store.cipher, ("ES256",))
        db.session.commit()
        store.feed.update(generations(app))
        first = store.ring(db.session)
        assert store.ring(db.session) is first  # fresh feed, young ring: no reload
        db.session.rollback()  # SQLite: end the read transaction before another writes
        publish_and_commit(app, changes.KEYS)
        store.feed.update(generations(app))
        assert store.ring(db.session) is not first


def test_changes_committed_here_make_this_process_s_entries_stale_at_once():
    """changed_here gives each topic a generation no cache entry has (nor any real one),
    and a later listener update brings the real generations back."""
    feed = changes.ChangeFeed()
    feed.update({changes.CLIENTS: 3, changes.KEYS: 5})
    feed.changed_here({changes.CLIENTS})
    first = feed.generation(changes.CLIENTS)
    assert first < 0 and feed.generation(changes.KEYS) == 5
    feed.changed_here({changes.CLIENTS})
    assert feed.generation(changes.CLIENTS) not in (first, 3)
    feed.update({changes.CLIENTS: 4, changes.KEYS: 5})
    assert feed.generation(changes.CLIENTS) == 4


def test_a_change_this_process_cannot_apply_marks_its_feed_stale_instead_of_failing():
    """Applying a committed message here re-reads its row; if that read fails the commit
    stands, the answer is not failed, and memory is not trusted until the listener reloads."""

    class Broken:
        def raw_connection(self) -> Any:
            raise ConnectionError("database gone")

    class Subscriber:
        def receive(self, messages: list[str], read: Any) -> None:
            raise AssertionError("not reached")

    feed = changes.ChangeFeed()
    feed.update({})
    feed.engine = Broken()  # type: ignore[assignment]
    feed.subscribe(Subscriber())  # type: ignore[arg-type]
    feed.committed(["rev jti:x"])
    assert not feed.fresh


def test_with_a_redis_channel_every_process_publishes_its_commits(app_factory):
    """Commands as well as serving workers: the publisher comes with the runtime."""
    import redis

    from identity.extensions import db
    from identity.revocation import remember_revocation

    app = app_factory(change_channel_url="redis://127.0.0.1:6379/0")
    pubsub = redis.Redis.from_url("redis://127.0.0.1:6379/0").pubsub()
    pubsub.subscribe(changes.CHANNEL)
    with app.app_context():
        remember_revocation(db.session, "jti:published", 60)
        db.session.commit()
    deadline = time.monotonic() + 5
    seen: list[bytes] = []
    while time.monotonic() < deadline and b"rev jti:published" not in seen:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            seen.extend(message["data"].split(b"\n"))
    pubsub.close()
    assert b"rev jti:published" in seen
