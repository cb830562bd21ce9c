"""identity db upgrade|downgrade|current."""

from __future__ import annotations

import click

from identity.cli import app_context, cli


@cli.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest)."""
    from identity import migrate
    from identity.extensions import db as database

    with app_context():
        migrate.upgrade(database.engine, revision)
        click.echo(f"at revision {migrate.current_revision(database.engine)}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (e.g. -1, or base to drop everything)."""
    from identity import migrate
    from identity.extensions import db as database

    with app_context():
        migrate.downgrade(database.engine, revision)
        click.echo(f"at revision {migrate.current_revision(database.engine)}")


@db.command()
def current() -> None:
    """Print the current schema revision and whether it is the newest."""
    from identity import migrate
    from identity.extensions import db as database

    with app_context():
        current_rev = migrate.current_revision(database.engine)
        head = migrate.head_revision(database.engine)
    click.echo(
        f"{current_rev or 'none'}{' (head)' if current_rev == head else f' (newest: {head})'}"
    )
