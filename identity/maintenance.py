"""Deleting what has expired, so tables do not grow without bound (REL-16).

Only rows that can no longer matter are removed: codes a day after they expired, refresh
tokens after their family ended, revocations after the tokens they cover expired, finished
pending requests, sign-ins that waited for a second factor too long, device codes, used
assertion ids, ended login sessions, stale sign-in throttles. Grants, consents and the
audit trail are never touched. Safe to run anywhere, any number of times, on every
instance at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from identity.database import rowcount
from identity.errors import store_unavailable
from identity.models.base import utcnow
from identity.models.mfa import PendingAuthentication
from identity.models.oauth import (
    AuthorizationCode,
    DeviceAuthorization,
    PendingAuthorization,
    RefreshToken,
    TokenRevocation,
    UsedJti,
)
from identity.models.session import LoginSession, LoginThrottle

if TYPE_CHECKING:
    pass

log = logging.getLogger("identity.maintenance")
GRACE = timedelta(days=1)


def purge(
    session: Session,
    session_idle_timeout: int,
    now: datetime | None = None,
    *,
    grace: timedelta = GRACE,
) -> dict[str, int]:
    """Delete what has expired; codes, device codes and ended refresh-token families
    ``grace`` after (IDENTITY_RETENTION_EXPIRED_GRANTS_DAYS)."""
    now = now or utcnow()
    statements = {
        "authorization_codes": delete(AuthorizationCode).where(
            AuthorizationCode.expires_at < now - grace
        ),
        "refresh_tokens": delete(RefreshToken).where(RefreshToken.family_expires_at < now - grace),
        "token_revocations": delete(TokenRevocation).where(TokenRevocation.expires_at < now),
        "pending_authorizations": delete(PendingAuthorization).where(
            PendingAuthorization.expires_at < now
        ),
        "pending_authentications": delete(PendingAuthentication).where(
            PendingAuthentication.expires_at < now
        ),
        "device_authorizations": delete(DeviceAuthorization).where(
            DeviceAuthorization.expires_at < now - grace
        ),
        "used_jtis": delete(UsedJti).where(UsedJti.expires_at < now),
        "login_sessions": delete(LoginSession).where(
            (LoginSession.expires_at < now)
            | (LoginSession.last_seen_at < now - timedelta(seconds=session_idle_timeout))
        ),
        "login_throttles": delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - grace),
    }
    counts = {name: rowcount(session.execute(stmt)) for name, stmt in statements.items()}
    session.commit()
    log.info("purged expired rows", extra={"event": "maintenance.purge", "deleted": counts})
    return counts


def start_janitor(
    interval: float, run_once: Callable[[], object], name: str = "purge"
) -> threading.Thread | None:
    """Run ``run_once`` about every ``interval`` seconds in a daemon thread (0: never).

    The first run comes after a random part of the interval, so the workers of several
    instances do not all run at the same moment."""
    if interval <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        delay = interval * random.random()  # noqa: S311 - spreading load, not secret  # nosec B311
        while not stop.wait(delay):
            delay = interval
            try:
                run_once()
            except OperationalError as error:
                if not store_unavailable(error):
                    log.exception("%s failed", name, extra={"event": f"maintenance.{name}_failed"})
                    continue
                # The database is down (a restart, a failover): expected, retried next time.
                log.warning(
                    "%s skipped: database unavailable",
                    name,
                    extra={"event": f"maintenance.{name}_skipped", "error": type(error).__name__},
                )
            except Exception:
                log.exception("%s failed", name, extra={"event": f"maintenance.{name}_failed"})

    thread = threading.Thread(target=loop, name=f"identity-{name}", daemon=True)
    thread.start()
    return thread
