"""The ``identity`` command. Its command names and options are a public interface."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask

from identity.errors import ConfigError, IdentityError


@contextmanager
def app_context() -> Iterator[Flask]:
    """Create the app from the environment; configuration errors end the command cleanly."""
    from identity import create_app

    try:
        app = create_app()
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    with app.app_context():
        yield app


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
