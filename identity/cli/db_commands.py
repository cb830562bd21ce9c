"""identity db upgrade|downgrade|current.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import re
import sys

import click

from identity.cli import DashedArguments, cli

RELATIVE = re.compile(r"-\d+")


@cli.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest)."""
    # Deferred for start-up time: Alembic and SQLAlchemy load only when a command runs.
    from identity import migrate
    from identity.cli.context import command

    with command(schema=False, create=True) as ctx:
        migrate.upgrade(ctx.engine, revision)
        click.echo(f"at revision {migrate.current_revision(ctx.engine)}")


@db.command(cls=DashedArguments)
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask before dropping every table (to base).")
def downgrade(revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION: -1 for one step back, or base to drop every table
    (which asks first, unless --yes). This deletes data."""
    from identity import migrate
    from identity.cli.context import command, database_label

    with command(schema=False) as ctx:
        steps = int(revision[1:]) if RELATIVE.fullmatch(revision) else None
        to_base = revision == "base" or (
            steps is not None and steps >= migrate.steps_to_base(ctx.engine)
        )
        if to_base and not yes:
            what = f"drops every table of {database_label(ctx.settings)}, and all its data"
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"downgrading to base {what}; add --yes to do it without a terminal"
                )
            click.confirm(f"Downgrading to base {what}. Continue?", abort=True)
        migrate.downgrade(ctx.engine, revision)
        click.echo(f"at revision {migrate.current_revision(ctx.engine)}")


@db.command()
def current() -> None:
    """Print the current schema revision and whether it is the newest."""
    from identity import migrate
    from identity.cli.context import command

    with command(schema=False) as ctx:
        current_rev = migrate.current_revision(ctx.engine)
        head = migrate.head_revision(ctx.engine)
    click.echo(
        f"{current_rev or 'none'}{' (head)' if current_rev == head else f' (newest: {head})'}"
    )
