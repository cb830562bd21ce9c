"""The ``identity`` command. Its command names and options are a public interface.

Start-up time is part of that interface: this package and the command modules import only
click and light modules of their own at the top, so that ``identity --help`` loads neither
Flask nor SQLAlchemy, Authlib or joserfc. Each command imports what it uses inside its
function, and only ``serve`` and ``check`` build the whole web app; the others run in
``identity.cli.context.command()``: the settings, one database session and, when asked
for, the services' shared objects.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from identity.exceptions import ConfigError, IdentityError

if TYPE_CHECKING:
    from flask import Flask

    from identity.settings import Settings

# A command spends most of its life importing: many objects made, few freed, and the cyclic
# garbage collector's passes over them cost a tenth of a short command's time. `main` makes
# them rarer; `serve`, the one long-lived command, gets the interpreter's defaults back.
DEFAULT_GC_THRESHOLD = gc.get_threshold()
START_UP_GC_THRESHOLD = (50_000, 20, 100)


@contextmanager
def app_context(settings: Settings | None = None) -> Iterator[Flask]:
    """Create the whole app from the environment (``serve`` and ``check``); configuration
    and database errors end the command cleanly with one line."""
    # Deferred for start-up time: the web app and SQLAlchemy load only for these commands.
    from sqlalchemy.exc import DBAPIError

    from identity import create_app
    from identity.cli.context import database_error, load, refuse_missing_database

    settings = settings or load()
    refuse_missing_database(settings)
    try:
        app = create_app(settings)
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    with app.app_context():
        try:
            yield app
        except DBAPIError as error:
            # An unreachable database or a missing table: one line, not a traceback.
            raise click.ClickException(
                f"database error: {database_error(error, settings)}"
            ) from None


class DashedArguments(click.Command):
    """A command whose argument may start with a dash: a relative revision (``-1``), or a
    key or client id (random base64url, so one in 32 starts with ``-``). A word with one
    leading dash that is none of the command's options is read as the argument it is, as
    if written after ``--`` (which still works)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            options = {name for param in self.get_params(ctx) for name in param.opts}
            options |= {name for param in self.get_params(ctx) for name in param.secondary_opts}
            dashed = [
                arg
                for arg in args
                if len(arg) > 1
                and arg.startswith("-")
                and not arg.startswith("--")
                and arg not in options
            ]
            if dashed:
                args = [arg for arg in args if arg not in dashed] + ["--", *dashed]
        return super().parse_args(ctx, args)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="identity")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """identity: a self-hosted OpenID Connect provider.

    Configuration comes from IDENTITY_* environment variables and an optional TOML file;
    see docs/configuration.md.
    """
    if ctx.invoked_subcommand == "serve":
        gc.set_threshold(*DEFAULT_GC_THRESHOLD)


def register_commands() -> click.Group:
    """Import every command module, which registers its commands on ``cli``."""
    from identity.cli import (  # noqa: F401 - registers commands
        audit_commands,
        authz_commands,
        backup_commands,
        commands,
        db_commands,
        gdpr_commands,
        groups_commands,
        oauth_commands,
        roles_commands,
        users,
    )

    return cli


def main() -> None:
    gc.set_threshold(*START_UP_GC_THRESHOLD)
    register_commands()

    try:
        cli(prog_name="identity")
    except IdentityError as error:  # pragma: no cover - click handles most
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
