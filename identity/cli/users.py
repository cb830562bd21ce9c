"""identity users ... and identity invites ..."""

from __future__ import annotations

import secrets
import sys

import click

from identity.cli import app_context, cli
from identity.errors import InvalidInput


@cli.group()
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
@click.option(
    "--role", "roles", multiple=True, metavar="ROLE", help="Give the user this role (repeatable)."
)
@click.option("--verified", is_flag=True, help="Mark the email address as verified.")
@click.option("--name", help="Display name.")
def create_user(
    email: str, password_stdin: bool, roles: tuple[str, ...], verified: bool, name: str | None
) -> None:
    """Create a user and print its id.

    Without --password-stdin a strong password is generated and printed on the second line.
    """
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.runtime import runtime

    generated = not password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\r\n")
    with app_context():
        try:
            user = Accounts(db.session, runtime()).create_user(
                email, password, roles=list(roles), verified=verified, name=name
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        click.echo(str(user.id))
        if generated:
            click.echo(password)


@cli.group()
def invites() -> None:
    """Invitations for IDENTITY_REGISTRATION=invite."""


@invites.command("create")
@click.option("--email", help="Only this email address may use the invitation.")
@click.option("--role", help="Role given to the account created with it.")
@click.option(
    "--expires-in",
    type=click.IntRange(1, 24 * 90),
    help="Hours until it expires [default: IDENTITY_INVITATION_LIFETIME].",
)
def create_invite(email: str | None, role: str | None, expires_in: int | None) -> None:
    """Create a single-use invitation and print its link."""
    from identity.accounts.admin import create_invitation
    from identity.extensions import db
    from identity.runtime import runtime

    with app_context():
        try:
            link = create_invitation(
                db.session,
                runtime(),
                email=email,
                role=role,
                lifetime=expires_in * 3600 if expires_in else None,
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        click.echo(link)


def _set_disabled(email: str, disabled: bool) -> None:
    from sqlalchemy import select

    from identity.accounts.admin import set_disabled
    from identity.accounts.service import normalize_email
    from identity.extensions import db
    from identity.models.user import User
    from identity.runtime import runtime

    with app_context():
        try:
            address = normalize_email(email)
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        user = db.session.execute(select(User).where(User.email == address)).scalar_one_or_none()
        if user is None:
            raise click.ClickException(f"no user with email {address}")
        set_disabled(
            db.session,
            user,
            disabled,
            access_token_lifetime=runtime().settings.access_token_lifetime,
        )
        db.session.commit()
        click.echo(f"{'disabled' if disabled else 'enabled'} {address}")


@users.command("disable")
@click.argument("email")
def disable_user(email: str) -> None:
    """Disable an account: its sessions, refresh tokens and access tokens stop working now."""
    _set_disabled(email, True)


@users.command("enable")
@click.argument("email")
def enable_user(email: str) -> None:
    """Re-enable a disabled account (the user signs in again; old grants stay revoked)."""
    _set_disabled(email, False)
