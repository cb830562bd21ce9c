"""The hot-path shortcuts (docs/performance.md) keep the guarantees of the slow paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.conftest import TEST_DATABASE_URL
from tests.conftest import test_settings as settings_for


def test_read_rows_fails_closed_when_the_database_is_unreachable(tmp_path: Path) -> None:
    """A hot-path read against a database that is down raises SQLAlchemy's
    OperationalError, which the error handler answers with 503 (REL-02)."""
    from identity.database import read_rows
    from identity.errors import store_unavailable

    settings = settings_for(tmp_path, "postgresql://postgres@127.0.0.1:1/unreachable")
    with pytest.raises(OperationalError) as caught:
        read_rows(settings, text("SELECT 1"), {})
    assert store_unavailable(caught.value)


def test_read_rows_survives_connections_the_database_dropped(app: Any) -> None:
    """After the database ends its connections (a PostgreSQL restart; on SQLite, the
    pooled connection closed under the pool), the next read still answers: it is retried
    once on a new connection instead of failing."""
    from identity.database import read_engine, read_rows
    from identity.extensions import db

    settings = app.extensions["identity"].settings
    if TEST_DATABASE_URL.startswith("postgresql"):
        statement = text("SELECT pg_backend_pid()")
        first = read_rows(settings, statement, {})[0][0]
        with app.app_context():
            db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            db.session.commit()
        second = read_rows(settings, statement, {})[0][0]
        assert second != first
        return
    statement = text("SELECT 1")
    assert read_rows(settings, statement, {})[0][0] == 1
    pooled = read_engine(settings).raw_connection()
    dropped = pooled.dbapi_connection
    assert dropped is not None
    pooled.close()  # back into the pool, which does not ping it before the next read
    dropped.close()
    assert read_rows(settings, statement, {})[0][0] == 1
    fresh = read_engine(settings).raw_connection()
    assert fresh.dbapi_connection is not dropped
    fresh.close()


def test_a_key_ring_reload_imports_only_new_keys(app: Any) -> None:
    """Reloading (every minute, and after a rotation) reuses the keys it already imported
    and still sees added and unpublished keys."""
    from identity.extensions import db
    from identity.oauth.keys import KeyRing, create_key, ensure_keys, retire

    cipher = app.extensions["identity"].keys.cipher
    with app.app_context():
        ensure_keys(db.session, cipher, ("ES256", "RS256"))
        db.session.commit()
        first = KeyRing.load(db.session, cipher)
        added = create_key(db.session, cipher, "ES256")
        db.session.commit()
        second = KeyRing.load(db.session, cipher, first)
        assert set(second.verifying) == {*first.verifying, added.kid}
        for kid, (_, key) in first.verifying.items():
            assert second.verifying[kid][1] is key
        old_es256 = next(k for k, (alg, _) in first.verifying.items() if alg == "ES256")
        retire(db.session, old_es256, max_token_lifetime=600, immediately=True)
        db.session.commit()
        third = KeyRing.load(db.session, cipher, second)
        assert old_es256 not in third.verifying
        assert set(third.verifying) == set(second.verifying) - {old_es256}
