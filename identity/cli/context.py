"""What the commands run in: the settings, one database session, and on demand the
services' shared objects (``Runtime``), without building the web app.

Every problem a command meets before it does its work ends it with one line: an invalid
setting, an instance folder that cannot be created, a database that is missing, unreachable
or without the schema. Each command commits once, at its end.

Imports inside functions are deferred for start-up time (see identity.cli).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from identity.exceptions import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from identity.changes import ChangeFeed
    from identity.runtime import Runtime
    from identity.settings import Settings

INIT_FIRST = "run `identity init` first"


@dataclass
class Command:
    settings: Settings
    engine: Engine
    session: Session
    _runtime: Runtime | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Runtime:
        """The services' shared objects (password hasher, key store, ...), built on first
        use: most commands never need them."""
        if self._runtime is None:
            # Deferred for start-up time: the OAuth stack, which most commands never need.
            from identity.factory import build_runtime

            try:
                self._runtime = build_runtime(self.settings)
            except ConfigError as error:
                raise click.ClickException(error.message) from None
        return self._runtime


def load() -> Settings:
    """The settings, after a warning for each IDENTITY_* variable that is no setting."""
    from identity.settings import load_settings, unknown_variables

    for warning in unknown_variables():
        click.echo(f"warning: {warning}", err=True)
    try:
        return load_settings()
    except ConfigError as error:
        raise click.ClickException(error.message) from None


class _JsonLines(logging.Formatter):
    """The server's JSON log lines, loaded only when a line is written (rarely, here)."""

    def format(self, record: logging.LogRecord) -> str:
        from identity.logs import JsonFormatter  # deferred: it imports Flask

        return JsonFormatter().format(record)


def configure_logging(settings: Settings) -> None:
    """Commands talk to the operator on stdout; standard error gets JSON log lines only for
    warnings and errors, or everything (the audit events too) with IDENTITY_LOG_LEVEL=DEBUG.
    The audit trail is in the database either way."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonLines())
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    # Even at DEBUG, Authlib must not log the tokens it issues (as identity.logs).
    logging.getLogger("authlib").setLevel(logging.INFO)


def database_label(settings: Settings) -> str:
    """The database URL as it may be shown: absolute for SQLite, without a password."""
    from sqlalchemy.engine import make_url

    url = settings.database_url if not settings.is_sqlite else settings.sqlalchemy_url
    return make_url(url).render_as_string(hide_password=True)


def database_error(error: DBAPIError | Exception, settings: Settings) -> str:
    """The driver's own message, first line only, never with the password of the URL."""
    from sqlalchemy.engine import make_url

    orig = getattr(error, "orig", None) or error
    lines = str(orig).strip().splitlines()
    text = lines[0] if lines else type(orig).__name__
    password = make_url(settings.sqlalchemy_url).password
    if password:
        text = text.replace(str(password), "***")
    return text


def refuse_missing_database(settings: Settings) -> None:
    """Stop before SQLite creates an empty database file (and folder) for a command that
    needs the real one: most often the command runs from another directory than `init`
    did, and the default instance folder is relative to the current directory."""
    from identity.database import sqlite_path

    path = sqlite_path(settings)
    if path is None:
        return
    setting = "IDENTITY_DATABASE_URL" if settings.database_url else "IDENTITY_INSTANCE_PATH"
    problem = _folder_problem(path.parent)
    if problem is not None:
        raise click.ClickException(f"{setting}: {problem}")
    if path.exists():
        return
    where = f"{setting}={settings.database_url or settings.instance_path}"
    if not settings.database_url and not settings.instance_path.is_absolute():
        where += ", relative to the current directory"
    if not path.parent.exists():
        where += f"; the folder {path.parent} does not exist"
    raise click.ClickException(f"no database at {path} ({where}); {INIT_FIRST}")


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold the SQLite database (which writes beside its file), or
    None: it is a writable folder, or does not exist yet but could be created."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == folder:
            return f"{folder} is not writable"
        return f"cannot be created: {existing} is not writable"
    return None


def require_schema(engine: Engine, settings: Settings) -> None:
    """Refuse a database that `identity init` never set up (or `db downgrade base` emptied),
    with one line instead of the SQL error the first query would raise."""
    from sqlalchemy import inspect, text

    with engine.connect() as connection:
        present = inspect(connection).has_table("alembic_version") and (
            connection.execute(text("SELECT version_num FROM alembic_version")).first() is not None
        )
    if not present:
        raise click.ClickException(
            f"the database {database_label(settings)} has no identity schema; {INIT_FIRST}"
        )


def _schema_hint(engine: Engine) -> str:
    """After an SQL error: whether the schema is older than this version's."""
    from identity import migrate

    try:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    except Exception:  # noqa: BLE001 - the database is unreachable, or the error was something else
        return ""
    if current == head:
        return ""
    return f" (the schema is at revision {current}, the newest is {head}: run `identity init`)"


def command_feed(settings: Settings) -> ChangeFeed:
    """A command's change feed: it publishes what the command commits when the channel is
    Redis (NOTIFY is sent in the transaction itself); a command holds no state to apply
    the messages to."""
    from identity.change_listener import redis_publisher
    from identity.changes import ChangeFeed, watch_sessions

    watch_sessions()
    feed = ChangeFeed()
    if settings.change_channel_url:
        feed.publisher = redis_publisher(settings.change_channel_url)
    return feed


@contextmanager
def command(*, schema: bool = True, create: bool = False) -> Iterator[Command]:
    """Settings, engine and session for one command.

    ``schema``: refuse a database without the identity schema (every command but ``init``
    and ``db ...``). ``create``: the command may create the instance folder and the SQLite
    database (``init``, ``db ...``); other commands refuse a missing SQLite file instead.
    """
    # Deferred for start-up time: SQLAlchemy loads only for commands that use it.
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.orm import Session

    from identity import changes
    from identity.database import create_command_engine, ensure_sqlite_folder

    settings = load()
    configure_logging(settings)
    try:
        if create:
            ensure_sqlite_folder(settings)
        else:
            refuse_missing_database(settings)
        engine = create_command_engine(settings)
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    try:
        # Not expired at the commit: a command prints what it did after committing it.
        with Session(engine, expire_on_commit=False) as session:
            # Its changes reach the running servers as a request's do (a revocation, a
            # disabled user: identity.changes), on a Redis channel too.
            session.info[changes.FEED] = command_feed(settings)
            if schema:
                require_schema(engine, settings)
            yield Command(settings, engine, session)
    except DBAPIError as error:
        # An unreachable database or a missing table: one line, not a traceback. Whether
        # the schema is old is asked only of a database that answered.
        answered = settings.is_sqlite or not isinstance(error, OperationalError)
        hint = _schema_hint(engine) if schema and answered else ""
        raise click.ClickException(
            f"database error: {database_error(error, settings)}{hint}"
        ) from None
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    finally:
        engine.dispose()
