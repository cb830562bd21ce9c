"""identity users ... and identity invites ...

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import TYPE_CHECKING, Any

import click

from identity.cli import cli
from identity.exceptions import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from identity.models.user import User


@cli.group()
def users() -> None:
    """Manage user accounts."""


def _new_password(password_stdin: bool) -> tuple[str, bool]:
    """The password from the first line of standard input, or a generated one (True)."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(18), True


def _find(session: Session, email: str) -> User:
    # Deferred for start-up time, as every import of the commands below.
    from identity.accounts.management import find_user

    try:
        return find_user(session, email)
    except (InvalidInput, NotFound) as error:
        raise click.ClickException(error.message) from None


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
    from identity.cli.context import command

    password, generated = _new_password(password_stdin)
    with command() as ctx:
        try:
            user = Accounts(ctx.session, ctx.runtime).create_user(
                email, password, roles=list(roles), verified=verified, name=name
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
        click.echo(str(user.id))
        if generated:
            click.echo(password)


def _describe(user: User) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "roles": user.role_names,
        "email_verified_at": when(user.email_verified_at),
        "disabled_at": when(user.disabled_at),
        "created_at": when(user.created_at),
        "updated_at": when(user.updated_at),
        "password_changed_at": when(user.password_changed_at),
        "last_sign_in_at": when(user.last_sign_in_at),
    }


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_users(as_json: bool) -> None:
    """List user accounts, oldest first."""
    from sqlalchemy import select

    from identity.cli.context import command
    from identity.models.user import User

    with command() as ctx:
        rows = [
            _describe(user)
            for user in ctx.session.execute(select(User).order_by(User.created_at)).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = (
            "disabled"
            if row["disabled_at"]
            else ("verified" if row["email_verified_at"] else "unverified")
        )
        click.echo(
            f"{row['email']}  {state}  {','.join(row['roles']) or '-'}  "
            f"{row['name'] or '-'}  created {row['created_at'][:16].replace('T', ' ')}"
        )


@users.command("show")
@click.argument("email")
def show_user(email: str) -> None:
    """Show an account as JSON, with its active sessions and connected apps (never its
    password hash)."""
    from sqlalchemy import func, select

    from identity.cli.context import command
    from identity.models.base import utcnow
    from identity.models.oauth import Client, Consent
    from identity.models.session import LoginSession

    with command() as ctx:
        session = ctx.session
        user = _find(session, email)
        row = _describe(user)
        row["login_sessions"] = session.execute(
            select(func.count())
            .select_from(LoginSession)
            .where(LoginSession.user_id == user.id, LoginSession.expires_at > utcnow())
        ).scalar_one()
        row["connected_apps"] = [
            {"client_id": client_id, "scopes": scopes}
            for client_id, scopes in session.execute(
                select(Client.client_id, Consent.scopes)
                .join(Consent, Consent.client_pk == Client.id)
                .where(Consent.user_id == user.id)
                .order_by(Client.client_id)
            )
        ]
    click.echo(json.dumps(row, indent=2))


@users.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(email: str, yes: bool) -> None:
    """Erase an account at once: `identity gdpr erase EMAIL --now` without a reason. Its
    sessions end, its tokens are revoked, clients are told, the audit trail keeps its
    records with the person taken out."""
    from identity.cli.context import command
    from identity.privacy.erasure import Erasure

    with command() as ctx:
        address = _find(ctx.session, email).email
        if not yes:
            # No transaction open (nor, on SQLite, the write lock) while a person answers.
            ctx.session.rollback()
            click.confirm(
                f"Delete {address} for good, with its sessions, tokens and consents?",
                abort=True,
            )
        try:
            receipt = Erasure(ctx.session, ctx.runtime).erase(_find(ctx.session, address))
        except Conflict as error:  # the last active administrator (AUTHZ-08)
            raise click.ClickException(error.message) from None
        ctx.session.commit()
    click.echo(f"deleted {address}: receipt {receipt.receipt_id}")


@users.command("set-password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
def set_password(email: str, password_stdin: bool) -> None:
    """Give an account a new password; its sessions end and its tokens are revoked.

    Without --password-stdin a strong password is generated and printed. No mail is sent.
    """
    from identity.accounts.service import Accounts
    from identity.cli.context import command

    password, generated = _new_password(password_stdin)
    with command() as ctx:
        user = _find(ctx.session, email)
        try:
            Accounts(ctx.session, ctx.runtime).set_password(user, password)
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        address = user.email
        ctx.session.commit()
    click.echo(f"password set for {address}; its sessions and tokens were ended")
    if generated:
        click.echo(password)


@users.command("reset-factors")
@click.argument("email")
def reset_factors(email: str) -> None:
    """Remove an account's authenticator app and recovery codes (the user lost them).

    The user is told by mail. Where a second factor is required, they set up a new one at
    their next sign-in.
    """
    from identity.auth.service import Factors
    from identity.cli.context import command

    with command() as ctx:
        user = _find(ctx.session, email)
        had = Factors(ctx.session, ctx.runtime).reset(user, actor_id=None)
        address = user.email
        ctx.session.commit()
    click.echo(f"second factors of {address} {'reset' if had else 'were already none'}")


@users.command("sign-out")
@click.argument("email")
def sign_out_everywhere(email: str) -> None:
    """End every session of an account and every app's grant, offline ones too.

    The account stays usable: the user signs in again. Apps that registered a back-channel
    logout URI are told.
    """
    from identity.cli.context import command
    from identity.revocation import revoke_user_tokens
    from identity.sessions import service as login_sessions

    with command() as ctx:
        user = _find(ctx.session, email)
        lifetime = ctx.settings.access_token_lifetime
        ended = login_sessions.revoke(ctx.session, user.id, None, access_token_lifetime=lifetime)
        revoke_user_tokens(ctx.session, user.id, lifetime)
        address = user.email
        ctx.session.commit()
    click.echo(f"signed out {address} everywhere ({ended} session{'' if ended == 1 else 's'})")


def _set_disabled(email: str, disabled: bool) -> None:
    from identity.accounts.management import set_disabled
    from identity.cli.context import command

    with command() as ctx:
        user = _find(ctx.session, email)
        try:
            set_disabled(
                ctx.session,
                user,
                disabled,
                access_token_lifetime=ctx.settings.access_token_lifetime,
            )
        except Conflict as error:  # the last active administrator (AUTHZ-08)
            raise click.ClickException(error.message) from None
        address = user.email
        ctx.session.commit()
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
    from identity.accounts.management import create_invitation
    from identity.cli.context import command

    with command() as ctx:
        try:
            link = create_invitation(
                ctx.session,
                ctx.runtime,
                email=email,
                role=role,
                lifetime=expires_in * 3600 if expires_in else None,
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
        registration = ctx.settings.registration
    if registration != "invite":
        reason = {
            "open": "anyone may register without an invitation (this one still gives its role)",
            "closed": "nobody may register, not even with this invitation",
        }[registration]
        click.echo(
            f"warning: IDENTITY_REGISTRATION is {registration}: {reason}; invitations are "
            "needed only with IDENTITY_REGISTRATION=invite",
            err=True,
        )
    click.echo(link)
