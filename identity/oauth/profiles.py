"""What UserInfo releases about a user, held in each serving worker's memory.

UserInfo is asked on every sign-in of many relying parties and by some on every page. With
the token checked from memory (identity.revocation_state), the user's row was the request's
only database round trip. ``ProfileCache`` keeps the few columns the claims come from,
while the revocation state is current, dropping an entry on the ``user <id>`` message every
flush that changes those columns sends (identity.changes.watch_users), and everything after
any gap in the channel. Roles and permissions come from the policy snapshot, which has its
own generation. An entry also expires after ``TTL`` and the cache holds ``MAX_ENTRIES`` at
most (least recently used out first), so memory stays bounded whatever the user count.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from identity.changes import ChangeFeed, Read
from identity.models.user import User
from identity.revocation_state import RevocationState, user_ids

TTL = 60.0
MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class Profile:
    """The columns of an active user that claims are made of (identity.oauth.scopes)."""

    id: uuid.UUID
    email: str
    name: str | None
    is_verified: bool
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> Profile:
        return cls(user.id, user.email, user.name, user.is_verified, user.updated_at)


class ProfileCache:
    """One per process (``Runtime.profiles``), subscribed to its change feed."""

    def __init__(self, feed: ChangeFeed, revocations: RevocationState) -> None:
        self.revocations = revocations
        self._entries: OrderedDict[uuid.UUID, tuple[float, Profile]] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every invalidation: a profile read from the database while one
        # happened may be the old one, and is not kept.
        self._epoch = 0
        feed.subscribe(self)

    def get(self, session: Session, user_id: uuid.UUID) -> Profile | None:
        """The profile of an active user, or None (no such user, or disabled)."""
        trusted = self.revocations.current
        now = time.monotonic()
        if trusted:
            with self._lock:
                hit = self._entries.get(user_id)
                if hit is not None and now - hit[0] < TTL:
                    self._entries.move_to_end(user_id)
                    return hit[1]
        epoch = self._epoch
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            return None
        profile = Profile.of(user)
        if trusted:
            with self._lock:
                if epoch == self._epoch:
                    self._entries[user_id] = (now, profile)
                    self._entries.move_to_end(user_id)
                    while len(self._entries) > MAX_ENTRIES:
                        self._entries.popitem(last=False)
        return profile

    # Subscriber ------------------------------------------------------------------------

    def resync(self, read: Read) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()

    def receive(self, messages: list[str], read: Read) -> None:
        users = user_ids(messages)
        if users:
            with self._lock:
                self._epoch += 1
                for user_id in users:
                    self._entries.pop(user_id, None)

    def tick(self, read: Read) -> None:
        """Nothing to catch up: a lost message is bounded by ``TTL``."""
