"""The ``identity`` command. Its command names and options are a public interface."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError

from identity.errors import ConfigError, IdentityError


@contextmanager
def app_context() -> Iterator[Flask]:
    """Create the app from the environment; configuration and database errors end the
    command cleanly with one line."""
    from identity import create_app

    try:
        app = create_app()
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    with app.app_context():
        try:
            yield app
        except DBAPIError as error:
            # An unreachable database or a missing table: one line, not a traceback.
            raise click.ClickException(f"database error: {_first_line(error)}") from None


def _first_line(error: DBAPIError) -> str:
    """The driver's own message (never the URL, so never a password), first line only."""
    lines = str(error.orig).strip().splitlines()
    return lines[0] if lines else type(error.orig).__name__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="identity")
def cli() -> None:
    """identity: a self-hosted OpenID Connect provider.

    Configuration comes from IDENTITY_* environment variables and an optional TOML file;
    see docs/configuration.md.
    """


def main() -> None:
    from identity.cli import (  # noqa: F401 - registers commands
        commands,
        db_commands,
        oauth_commands,
        users,
    )

    try:
        cli(prog_name="identity")
    except IdentityError as error:  # pragma: no cover - click handles most
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
