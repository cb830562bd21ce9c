"""The revocations that can still matter, held in each serving worker's memory.

Checking an access token (introspection, UserInfo, the admin API's bearer tokens) asks
whether anything ended it early: its ``jti``, its grant family (``gid``) or its user
(``sub``: tokens issued before a password change, a disabling, an erasure), or the user
being disabled now. The answer used to be one database round trip per check. Here each
process loads every unexpired ``token_revocations`` row and the disabled users once, then
keeps them current from the change channel (identity.changes): ``rev <key>`` and
``user <id>`` messages name a row to re-read, every heartbeat reads the revocations made
lately (``LOOKBACK``: a message lost between a commit and a Redis publish is caught within
a heartbeat), and everything is reloaded every ``RESYNC_INTERVAL`` and after any gap.

The state is used only while it is ``current``: loaded, and the feed confirmed within
``changes.STALE_AFTER``. Otherwise ``TokenService`` reads the database, as on SQLite, where
there is no round trip to save.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from identity.changes import ChangeFeed, Read

REVOKED = "rev"
USER = "user"
LOOKBACK = 30.0  # seconds: longer than a transaction that revokes, plus clock skew
# Everything is read again this often: what a lost message and a writer's clock far off or
# a transaction longer than LOOKBACK could have hidden from the catch-up stays hidden at most
# this long (and never from the database path, nor with NOTIFY, whose messages are not lost).
RESYNC_INTERVAL = 60.0
PRUNE_INTERVAL = 60.0


def revocation_keys(claims: dict[str, Any]) -> list[str]:
    """The ``token_revocations`` keys that can end this access token."""
    keys = [f"jti:{claims['jti']}"]
    if claims.get("gid"):
        keys.append(f"gid:{claims['gid']}")
    if claims.get("sub") and claims.get("client_id") != claims.get("sub"):
        keys.append(f"sub:{claims['sub']}")
    return keys


def is_revoked_by(claims: dict[str, Any], rows: Any) -> bool:
    """Whether these revocations (key, revoked_at as datetime or epoch) cover the token."""
    for key, revoked_at in rows:
        if not key.startswith("sub:"):
            return True
        # A user-wide revocation covers the tokens issued before it.
        at = revoked_at.timestamp() if isinstance(revoked_at, datetime) else revoked_at
        if claims["iat"] <= at:
            return True
    return False


class RevocationState:
    """One per process (``Runtime.revocations``), subscribed to its change feed."""

    def __init__(
        self,
        feed: ChangeFeed,
        erased_name: Callable[[uuid.UUID], str] | None = None,
        horizon: float = 3600.0,
    ) -> None:
        self.feed = feed
        self._revoked: dict[str, tuple[float, float]] = {}  # key: (revoked_at, expires_at)
        self._disabled: frozenset[uuid.UUID] = frozenset()
        # Accounts erased within ``horizon`` (the longest an access token lives), by the
        # erasure ledger's keyed hash: the ledger is all that names them, not by their id.
        self._erased_name = erased_name
        self._erased: frozenset[str] = frozenset()
        # Users whose row went away (erased, or deleted otherwise) while this process ran:
        # kept ``horizon`` seconds, across reloads, since no row says they are gone.
        self._gone: dict[uuid.UUID, float] = {}
        self.horizon = horizon
        self._loaded = False
        self._watermark = 0.0  # the latest revoked_at seen (the writers' clocks)
        self._resynced = self._pruned = 0.0
        feed.subscribe(self)

    @property
    def current(self) -> bool:
        return self._loaded and self.feed.fresh

    def ends(self, claims: dict[str, Any], user_id: uuid.UUID | None) -> bool:
        """Whether the token is revoked or its user disabled (only while ``current``)."""
        found = [(key, self._revoked.get(key)) for key in revocation_keys(claims)]
        rows = [(key, entry[0]) for key, entry in found if entry is not None]
        if is_revoked_by(claims, rows):
            return True
        if user_id is None:
            return False
        if user_id in self._disabled or user_id in self._gone:
            return True
        return (
            bool(self._erased)
            and self._erased_name is not None
            and (self._erased_name(user_id) in self._erased)
        )

    # Subscriber ------------------------------------------------------------------------

    def resync(self, read: Read) -> None:
        revoked = {
            key: (_epoch(at), _epoch(expires))
            for key, at, expires in read(
                "SELECT key, revoked_at, expires_at FROM token_revocations WHERE expires_at > %s",
                (_now(),),
            )
        }
        disabled = frozenset(
            _uuid(row[0]) for row in read("SELECT id FROM users WHERE disabled_at IS NOT NULL", ())
        )
        erased = frozenset(
            row[0]
            for row in read(
                "SELECT subject_hash FROM erasure_ledger WHERE erased_at > %s",
                (_now() - timedelta(seconds=self.horizon),),
            )
        )
        self._revoked, self._disabled, self._erased = revoked, disabled, erased
        self._watermark = _capped(max((at for at, _ in revoked.values()), default=time.time()))
        self._resynced = time.monotonic()
        self._loaded = True

    def receive(self, messages: list[str], read: Read) -> None:
        if not self._loaded:
            return  # a command's process, or not loaded yet: the resync reads it all
        keys = {name for kind, name in _parsed(messages) if kind == REVOKED}
        users = user_ids(messages)
        if keys:
            self._reread_revocations(keys, read)
        if users:
            self._reread_users(users, read)

    def tick(self, read: Read) -> None:
        if not self._loaded:
            return
        now = time.monotonic()
        if now - self._resynced > RESYNC_INTERVAL:
            self.resync(read)
            return
        since = datetime.fromtimestamp(self._watermark - LOOKBACK).astimezone()
        rows = read(
            "SELECT key, revoked_at, expires_at FROM token_revocations WHERE revoked_at > %s",
            (since,),
        )
        if rows:
            self._revoked.update(_entries(rows))
            # A writer's clock ahead of ours must not move the catch-up past what others
            # commit meanwhile: the watermark never runs ahead of this worker's clock.
            self._watermark = _capped(max(self._watermark, *(_epoch(row[1]) for row in rows)))
        erased = read("SELECT subject_hash FROM erasure_ledger WHERE erased_at > %s", (since,))
        if erased:
            self._erased = self._erased | {row[0] for row in erased}
        if now - self._pruned > PRUNE_INTERVAL:
            wall = time.time()
            self._revoked = {k: v for k, v in self._revoked.items() if v[1] > wall}
            self._gone = {k: v for k, v in self._gone.items() if v > wall}
            self._pruned = now
            # Erasures older than the horizon are dropped by the next resync.

    def _reread_revocations(self, keys: set[str], read: Read) -> None:
        rows = read(
            "SELECT key, revoked_at, expires_at FROM token_revocations WHERE key = ANY(%s)",
            (list(keys),),
        )
        found = _entries(rows)
        self._revoked.update(found)  # one key at a time: a check never sees half of one
        for key in keys - found.keys():
            self._revoked.pop(key, None)  # rolled back, or purged

    def _reread_users(self, users: set[uuid.UUID], read: Read) -> None:
        rows = read("SELECT id, disabled_at FROM users WHERE id = ANY(%s)", (list(users),))
        present = {_uuid(user_id) for user_id, _ in rows}
        active = {_uuid(user_id) for user_id, disabled_at in rows if disabled_at is None}
        # Replaced whole, never changed in place: checks read them without the lock.
        self._disabled = (self._disabled - active) | (present - active)
        until = time.time() + self.horizon
        self._gone = {**self._gone, **dict.fromkeys(users - present, until)}


def _parsed(messages: list[str]) -> list[tuple[str, str]]:
    return [(kind, name) for kind, _, name in (m.partition(" ") for m in messages)]


def user_ids(messages: list[str]) -> set[uuid.UUID]:
    """The users ``user <id>`` messages name (malformed ids ignored)."""
    found = set()
    for kind, name in _parsed(messages):
        if kind == USER:
            try:
                found.add(uuid.UUID(name))
            except ValueError:
                continue
    return found


def _capped(watermark: float) -> float:
    return min(watermark, time.time())


def _entries(rows: list[tuple[Any, ...]]) -> dict[str, tuple[float, float]]:
    return {key: (_epoch(at), _epoch(expires)) for key, at, expires in rows}


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _now() -> datetime:
    return datetime.now().astimezone()


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
