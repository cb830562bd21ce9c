"""Alembic environment: runs against the engine identity hands over (see identity.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

import identity.models  # noqa: F401 - registers every table
from identity.migrate import autogenerate_options
from identity.models.base import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    # Plain `alembic` CLI use: build the engine from the identity settings.
    from identity import create_app
    from identity.extensions import db

    app = create_app()
    with app.app_context():
        return db.engine


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            **autogenerate_options(),
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
