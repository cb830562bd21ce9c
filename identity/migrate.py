"""Alembic, driven programmatically against the app's engine."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from identity import paths
from identity.models.base import UTCDateTime


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(paths.migrations_dir()))
    config.attributes["engine"] = engine
    return config


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate writes UTCDateTime columns as the plain type they store."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def autogenerate_options() -> dict[str, Any]:
    """How models and database are compared: by migrations/env.py when autogenerating a
    revision, and by the test that keeps models and migrations in step."""
    return {
        "compare_type": True,
        "compare_server_default": True,
        "render_item": render_item,
    }


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine)


def steps_to_base(engine: Engine) -> int:
    """How many revisions the current one is above base (0 for an empty database)."""
    current = current_revision(engine)
    if current is None:
        return 0
    script = ScriptDirectory.from_config(alembic_config(engine))
    return sum(1 for _ in script.iterate_revisions(current, "base"))
