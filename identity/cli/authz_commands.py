"""identity permissions ... and identity authz check: identity's permissions and those an
application declares, and the policy engine's answer, beside the admin API. ``authz check``
exits 0 when allowed, 1 when denied and 2 for any error, so that a script never reads a
mistake as a decision. What the commands of role-based access control share is in
identity.cli.rbac_common.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from identity.cli import cli
from identity.cli.rbac_common import (
    DashedPositionals,
    client_scope,
    get_client,
    refused,
    resolve_subject,
    within,
)

if TYPE_CHECKING:
    import uuid

    from identity.rbac.policy import Decision, Step


@cli.group()
def permissions() -> None:
    """List identity's permissions; declare and remove an application's own."""


@permissions.command("list")
@click.option(
    "--client", "client_id", metavar="CLIENT_ID", help="The permissions this client declares."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_permissions(client_id: str | None, as_json: bool) -> None:
    """List identity's own permissions, or with --client those an application declares."""
    from identity.cli.context import command
    from identity.rbac.permissions import DESCRIPTIONS, Permission
    from identity.rbac.service import client_permissions

    with command() as ctx, refused():
        if client_id is None:
            rows = [
                {
                    "name": p.value,
                    "description": DESCRIPTIONS[p],
                    "client_id": None,
                    "in_token": False,  # a column of the listing  # nosec B105
                }
                for p in Permission
            ]
        else:
            rows = [
                {
                    "name": p.name,
                    "description": p.description,
                    "client_id": client_id,
                    "in_token": p.in_token,
                }
                for p in client_permissions(ctx.session, get_client(ctx.session, client_id).id)
            ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        flag = "  in token" if row["in_token"] else ""
        click.echo(f"{row['name']}{flag}  {row['description'] or '-'}")


@permissions.command("declare", cls=DashedPositionals)
@click.argument("client_id")
@click.argument("name")
@click.option("--description", default="", help="What the permission allows.")
@click.option(
    "--in-token",
    is_flag=True,
    help='Tokens for this client carry it in their "permissions" claim when the user holds it.',
)
def declare_permission(client_id: str, name: str, description: str, in_token: bool) -> None:
    """Declare a permission of an application (resource:action); declaring it again
    replaces its description and --in-token."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        client = get_client(ctx.session, client_id)
        rbac.declare_permission(
            ctx.session, client.id, name, description=description, in_token=in_token
        )
        ctx.session.commit()
    click.echo(f"declared {name} for client {client_id}" + (" (in tokens)" if in_token else ""))


@permissions.command("remove", cls=DashedPositionals)
@click.argument("client_id")
@click.argument("name")
def remove_permission(client_id: str, name: str) -> None:
    """Remove a permission an application declared (roles that hold it keep the name)."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        rbac.remove_permission(ctx.session, get_client(ctx.session, client_id).id, name)
        ctx.session.commit()
    click.echo(f"removed {name} from client {client_id}")


# -- authz ------------------------------------------------------------------------------


@cli.group()
def authz() -> None:
    """Ask the policy engine: may this user or client do that?"""


class CheckError(click.ClickException):
    """An error of `authz check`: exit 2, as 1 means denied (a mistake must not read as a
    decision)."""

    exit_code = 2


def _step(step: Step, clients: dict[uuid.UUID, str]) -> str:
    text = f"{step.kind} {step.name}"
    return text + within(clients.get(step.scope, str(step.scope))) if step.scope else text


def _print_explanation(decision: Decision, clients: dict[uuid.UUID, str]) -> None:
    click.echo(f"reason: {decision.reason}")
    if decision.allowed:
        click.echo("path:")
        for step in decision.path:
            click.echo(f"  {_step(step, clients)}")
        return
    click.echo("candidates:" if decision.candidates else "candidates: none")
    for role, grant in decision.candidates:
        click.echo(f"  {role} (holds {grant})")


@authz.command("check", cls=DashedPositionals)
@click.argument("subject")
@click.argument("permission")
@click.option(
    "--client", "client_id", metavar="CLIENT_ID", help="Check within this client (its roles too)."
)
@click.option(
    "--explain", is_flag=True, help="Also print why: the path that grants it, or who has it."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"allowed", "permission", "explanation"} as the API does.',
)
def check_permission(
    subject: str, permission: str, client_id: str | None, explain: bool, as_json: bool
) -> None:
    """Whether SUBJECT (a user's email or a client_id) holds PERMISSION, globally or
    within --client. Prints allowed or denied; exits 0 when allowed, 1 when denied, 2 on
    an error (an unknown user, client or permission name)."""
    from identity.cli.context import command
    from identity.rbac.permissions import check_grantable
    from identity.rbac.policy import check as decide
    from identity.rbac.store import load_snapshot

    try:
        with command() as ctx, refused():
            check_grantable(permission)
            kind, principal, label = resolve_subject(ctx.session, subject)
            scope = client_scope(ctx.session, client_id)
            snapshot = load_snapshot(ctx.session)
            # The path names the user by the email asked about rather than by their id.
            snapshot.names = {**snapshot.names, principal: label}
            decision = decide(snapshot, kind, principal, permission, scope)
            clients = dict(snapshot.names)
    except click.ClickException as error:
        raise CheckError(error.message) from None
    if as_json:
        body = {
            "allowed": decision.allowed,
            "permission": permission,
            "explanation": decision.explanation(),
        }
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo("allowed" if decision.allowed else "denied")
        if explain:
            _print_explanation(decision, clients)
    if not decision.allowed:
        sys.exit(1)
