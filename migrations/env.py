"""Alembic environment: runs against the engine identity hands over (see identity.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

import identity.models  # noqa: F401 - registers every table
from identity.models.base import Base, UTCDateTime

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


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            render_item=render_item,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
