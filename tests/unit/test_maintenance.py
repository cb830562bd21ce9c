"""REL-16: the purge deletes only what has expired, and can run any number of times."""

from __future__ import annotations

from datetime import timedelta

from identity.extensions import db
from identity.maintenance import purge
from identity.models.base import utcnow
from identity.models.oauth import TokenRevocation, UsedJti
from identity.models.session import LoginSession


def test_REL_16_purge_removes_expired_rows_and_keeps_live_ones(app, user):
    """Expired revocations, assertion ids and sessions go; unexpired ones stay."""
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                TokenRevocation(
                    key="jti:old", revoked_at=now, expires_at=now - timedelta(seconds=1)
                ),
                TokenRevocation(
                    key="jti:live", revoked_at=now, expires_at=now + timedelta(hours=1)
                ),
                UsedJti(key="c:old", expires_at=now - timedelta(seconds=1)),
                LoginSession(
                    id_hash="a" * 64,
                    sid="s1",
                    user_id=user,
                    expires_at=now - timedelta(seconds=1),
                    auth_time=now - timedelta(hours=13),
                    last_seen_at=now,
                ),
                LoginSession(
                    id_hash="b" * 64,
                    sid="s2",
                    user_id=user,
                    expires_at=now + timedelta(hours=1),
                    auth_time=now,
                    last_seen_at=now,
                ),
            ]
        )
        db.session.commit()
        counts = purge(db.session, session_idle_timeout=1800)
        assert counts["token_revocations"] == 1
        assert counts["used_jtis"] == 1
        assert counts["login_sessions"] == 1
        assert db.session.get(TokenRevocation, "jti:live") is not None
        assert db.session.get(LoginSession, "b" * 64) is not None
        assert purge(db.session, session_idle_timeout=1800)["login_sessions"] == 0


def test_janitor_runs_the_purge_repeatedly_and_survives_failures():
    """The janitor thread calls its job again and again, even after one raises."""
    import threading

    from identity.maintenance import start_janitor

    calls = []
    done = threading.Event()

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first purge fails")
        if len(calls) >= 3:
            done.set()

    assert start_janitor(0, job) is None
    thread = start_janitor(0.01, job)
    assert thread is not None and thread.daemon
    assert done.wait(5)


def test_a_janitor_run_during_a_database_outage_is_one_warning_without_traceback(caplog):
    """A restart or failover is expected operation: the run is skipped with one warning
    line (no traceback) and retried at the next interval; other errors keep theirs."""
    import logging
    import sqlite3
    import threading

    from sqlalchemy.exc import OperationalError

    from identity.maintenance import start_janitor

    calls = []
    done = threading.Event()

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk i/o error"))
        done.set()

    with caplog.at_level(logging.WARNING, logger="identity.maintenance"):
        start_janitor(0.01, job, name="mail_sweep")
        assert done.wait(5)
    [record] = [r for r in caplog.records if r.name == "identity.maintenance"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.event == "maintenance.mail_sweep_skipped"
