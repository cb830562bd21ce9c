"""Engine set-up for the two supported stores.

SQLite: WAL (readers never block the writer), foreign keys on, a busy timeout, and
``BEGIN IMMEDIATE`` so a transaction that reads before it writes cannot fail half-way with
SQLITE_BUSY when another process wrote in between. PostgreSQL: psycopg 3 with pre-ping so
connections dropped by a database restart are replaced (REL-02).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from identity.settings import Settings


def engine_options(settings: Settings) -> dict[str, Any]:
    if settings.is_sqlite:
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {
        "pool_pre_ping": True,
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_pool_size,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 10},
    }


def configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # FULL: a committed (acknowledged) transaction survives power loss too.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def setup_database(app: Flask, settings: Settings) -> None:
    from identity.extensions import db

    if settings.is_sqlite:
        path = settings.sqlalchemy_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.sqlalchemy_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings)
    db.init_app(app)
    if settings.is_sqlite:
        with app.app_context():
            configure_sqlite(db.engine)
