"""Engine set-up for the two supported stores.

SQLite: WAL (readers never block the writer), foreign keys on, a busy timeout, and
``BEGIN IMMEDIATE`` so a transaction that reads before it writes cannot fail half-way with
SQLITE_BUSY when another process wrote in between. PostgreSQL: psycopg 3 with pre-ping so
connections dropped by a database restart are replaced (REL-02).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Executable, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Engine, Result
from sqlalchemy.exc import DBAPIError

from identity.exceptions import ConfigError
from identity.settings import Settings

if TYPE_CHECKING:
    pass


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


def configure_sqlite(engine: Engine, *, begin: str = "BEGIN IMMEDIATE") -> None:
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
        connection.exec_driver_sql(begin)


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite database file, or None (PostgreSQL, or an in-memory database)."""
    if not settings.is_sqlite:
        return None
    path = settings.sqlalchemy_url.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


def ensure_sqlite_folder(settings: Settings) -> None:
    """Create the folder of the SQLite file; a ConfigError naming the setting and the reason
    when it cannot be (an instance folder under /sys, or below a file)."""
    path = sqlite_path(settings)
    if path is None:
        return
    if not settings.database_url:
        settings.ensure_instance_path()  # the default database lives in the instance folder
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"IDENTITY_DATABASE_URL: cannot create {path.parent}: "
            f"{error.strerror or type(error).__name__}"
        ) from None


def create_command_engine(settings: Settings) -> Engine:
    """The engine of one command: the server's options, without Flask."""
    engine = create_engine(settings.sqlalchemy_url, **engine_options(settings))
    if settings.is_sqlite:
        configure_sqlite(engine)
    return engine


def create_snapshot_engine(settings: Settings) -> Engine:
    """The engine of a consistent read of the whole database (a backup). Each transaction
    sees one state of every table while writers go on: on SQLite a deferred ``BEGIN``,
    whose first read fixes its WAL snapshot and which holds no writer off (``BEGIN
    IMMEDIATE`` would); on PostgreSQL REPEATABLE READ, read only."""
    if settings.is_sqlite:
        engine = create_engine(settings.sqlalchemy_url, **engine_options(settings))
        configure_sqlite(engine, begin="BEGIN")
        return engine
    return create_engine(
        settings.sqlalchemy_url,
        isolation_level="REPEATABLE READ",
        execution_options={"postgresql_readonly": True},
        **engine_options(settings),
    )


# Hot-path reads (PostgreSQL) ---------------------------------------------------------------

_read_engines: dict[tuple[int, str], Engine] = {}
_driver_sql: dict[Executable, str] = {}
_read_engines_lock = threading.Lock()


def read_engine(settings: Settings) -> Engine:
    """The engine of ``read_rows``: one per process and database, made on first use (so
    after the server forks), with autocommit connections and no ping at checkout."""
    key = (os.getpid(), settings.sqlalchemy_url)
    engine = _read_engines.get(key)
    if engine is None:
        with _read_engines_lock:
            engine = _read_engines.get(key)
            if engine is None:
                # At most IDENTITY_DATABASE_POOL_SIZE connections: each read is one short
                # statement, so more threads than that would only wait a moment.
                options = {
                    **engine_options(settings),
                    "pool_pre_ping": False,
                    "max_overflow": 0,
                }
                engine = create_engine(
                    settings.sqlalchemy_url, isolation_level="AUTOCOMMIT", **options
                )
                _read_engines[key] = engine
    return engine


def read_rows(
    settings: Settings, statement: Executable, params: Mapping[str, Any]
) -> Sequence[Any]:
    """Run one read-only statement in one round trip to PostgreSQL; the rows come back as
    the driver returns them (tuples, no SQLAlchemy type processing), and ``params`` must be
    values the driver adapts itself (str, int, UUID).

    The app's session would spend three more round trips on such a read (the pool's
    pre-ping, BEGIN and COMMIT) and SQLAlchemy's execution machinery about three times the
    CPU of the query itself. Here the statement is compiled once, and runs on a pooled
    autocommit connection of ``read_engine`` without a ping. A statement that fails because
    the database dropped the connection (a restart, a failover) is run once more on a new
    connection, after the pool is emptied of the other stale ones; a database that is really
    down still fails, with SQLAlchemy's OperationalError, which answers 503 (REL-02).
    """
    engine = read_engine(settings)
    dialect = engine.dialect
    sql = _driver_sql.get(statement)
    if sql is None:
        sql = _driver_sql[statement] = str(statement.compile(dialect=dialect))  # type: ignore[attr-defined]
    driver_error = dialect.loaded_dbapi.Error
    for last_try in (False, True):
        connection = cursor = None
        try:
            connection = engine.raw_connection()
            cursor = connection.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.close()
            return rows
        except driver_error as error:
            dropped = connection is not None and dialect.is_disconnect(error, connection, cursor)
            if dropped:
                connection.invalidate(error)  # type: ignore[union-attr]
                engine.dispose()
            if last_try or not dropped:
                raise DBAPIError.instance(
                    sql,
                    params,
                    error,
                    driver_error,
                    connection_invalidated=dropped,
                    dialect=dialect,
                ) from error
        finally:
            if connection is not None:
                connection.close()
    raise AssertionError("unreachable")


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a Result;
    for these statements it is a CursorResult, which alone has ``rowcount``."""
    return cast("CursorResult[Any]", result).rowcount


def dialect_insert(session: Any, model: Any) -> Any:
    """An INSERT with ON CONFLICT for the session's database: PostgreSQL and SQLite both
    have it, under their own SQLAlchemy constructs."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def upsert(
    session: Any, model: Any, values: dict[str, Any], *, index: list[str], update: dict[str, Any]
) -> Any:
    """INSERT ... ON CONFLICT (index) DO UPDATE."""
    statement = dialect_insert(session, model).values(**values)
    return session.execute(statement.on_conflict_do_update(index_elements=index, set_=update))
