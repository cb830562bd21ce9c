"""identity roles ...: the operator's side of roles, their permissions and who holds
them, beside the admin API. What the commands of role-based access control share (refusals
as one line, finding users, clients and holders) is in identity.cli.rbac_common.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from identity.cli import cli
from identity.cli.rbac_common import (
    client_ids,
    client_scope,
    holder_options,
    plural,
    refused,
    require_one_holder,
    resolve_holder,
    within,
)
from identity.exceptions import Conflict, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from identity.models.rbac import Role
    from identity.rbac.policy import Snapshot


@cli.group()
def roles() -> None:
    """Manage roles: their permissions, the roles they inherit, and who holds them."""


def _role_row(snapshot: Snapshot, role: Role) -> dict[str, Any]:
    """A role as the admin API shows it; a built-in role's permissions are identity's."""
    node = snapshot.roles[role.id]
    return {
        "id": str(role.id),
        "name": role.name,
        "description": role.description,
        "builtin": role.builtin,
        "permissions": sorted(node.permissions),
        "parents": sorted(snapshot.roles[p].name for p in node.parents if p in snapshot.roles),
    }


def _holders(session: Session, role: Role) -> dict[str, list[dict[str, Any]]]:
    """Who holds the role directly (not through a group or an inheriting role)."""
    from sqlalchemy import select

    from identity.models.rbac import Group, RoleAssignment
    from identity.models.user import User

    clients = client_ids(session)
    out: dict[str, list[dict[str, Any]]] = {"users": [], "groups": [], "clients": []}
    rows = session.execute(
        select(RoleAssignment, User.email, Group.name)
        .outerjoin(User, User.id == RoleAssignment.user_id)
        .outerjoin(Group, Group.id == RoleAssignment.group_id)
        .where(RoleAssignment.role_id == role.id)
    )
    for row, email, group in rows:
        scope = clients.get(row.scope_client_pk) if row.scope_client_pk else None
        if email is not None:
            out["users"].append({"email": email, "scope": scope})
        elif group is not None:
            out["groups"].append({"name": group, "scope": scope})
        elif row.client_pk is not None:
            out["clients"].append({"client_id": clients.get(row.client_pk), "scope": scope})
    for key, items in out.items():
        name = {"users": "email", "groups": "name", "clients": "client_id"}[key]
        items.sort(key=lambda item: (str(item[name]), item["scope"] or ""))
    return out


def _show_role(session: Session, role: Role) -> dict[str, Any]:
    from identity.rbac.store import load_snapshot

    return {**_role_row(load_snapshot(session), role), "holders": _holders(session, role)}


def _print_role(row: dict[str, Any]) -> None:
    def holders(kind: str, key: str) -> str:
        items = row["holders"][kind]
        return ", ".join(f"{h[key]}{within(h['scope'])}" for h in items) or "-"

    click.echo(f"name:        {row['name']}")
    click.echo(f"description: {row['description'] or '-'}")
    click.echo(f"built-in:    {'yes' if row['builtin'] else 'no'}")
    click.echo(f"permissions: {', '.join(row['permissions']) or '-'}")
    click.echo(f"parents:     {', '.join(row['parents']) or '-'}")
    click.echo(f"users:       {holders('users', 'email')}")
    click.echo(f"groups:      {holders('groups', 'name')}")
    click.echo(f"clients:     {holders('clients', 'client_id')}")


@roles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_roles(as_json: bool) -> None:
    """List roles by name, with their permissions and the roles they inherit."""
    from sqlalchemy import select

    from identity.cli.context import command
    from identity.models.rbac import Role
    from identity.rbac.store import load_snapshot

    with command() as ctx:
        snapshot = load_snapshot(ctx.session)
        rows = [
            _role_row(snapshot, role)
            for role in ctx.session.execute(select(Role).order_by(Role.name)).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        inherits = f"inherits {','.join(row['parents'])}" if row["parents"] else "-"
        click.echo(
            f"{row['name']}  {'built-in' if row['builtin'] else 'custom'}  "
            f"{','.join(row['permissions']) or '-'}  {inherits}  {row['description'] or '-'}"
        )


@roles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show_role(name: str, as_json: bool) -> None:
    """Show a role: its permissions, the roles it inherits, whether it is built in, and
    the users, groups and clients that hold it directly."""
    from identity.cli.context import command
    from identity.rbac.service import role_by_name

    with command() as ctx, refused():
        row = _show_role(ctx.session, role_by_name(ctx.session, name))
    if as_json:
        click.echo(json.dumps(row, indent=2))
    else:
        _print_role(row)


@roles.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the role is for.")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    metavar="PERMISSION",
    help="A permission the role holds: resource:action, resource:* or * (repeatable).",
)
@click.option(
    "--parent",
    "parents",
    multiple=True,
    metavar="ROLE",
    help="A role whose permissions this role inherits (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the role as a JSON object.")
def create_role(
    name: str,
    description: str,
    permissions: tuple[str, ...],
    parents: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a role."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        role = rbac.create_role(
            ctx.session,
            name,
            description=description,
            permissions=permissions,
            parents=parents,
        )
        row = _show_role(ctx.session, role)
        ctx.session.commit()
    if as_json:
        click.echo(json.dumps(row, indent=2))
    else:
        click.echo(f"created role {name}")


@roles.command("update")
@click.argument("name")
@click.option("--description", help="What the role is for.")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    metavar="PERMISSION",
    help="A permission the role holds (repeatable); replaces every one it held.",
)
@click.option("--clear-permissions", is_flag=True, help="Remove every permission of the role.")
@click.option(
    "--parent",
    "parents",
    multiple=True,
    metavar="ROLE",
    help="A role this role inherits (repeatable); replaces every one it inherited.",
)
@click.option("--clear-parents", is_flag=True, help="Inherit no role any more.")
def update_role(
    *,  # click passes every option by name
    name: str,
    description: str | None,
    permissions: tuple[str, ...],
    clear_permissions: bool,
    parents: tuple[str, ...],
    clear_parents: bool,
) -> None:
    """Change a role's description, permissions or parents. Options not given keep their
    values; --permission and --parent replace the whole list."""
    from identity.cli.context import command
    from identity.rbac import service as rbac
    from identity.rbac.store import load_snapshot

    if permissions and clear_permissions:
        raise click.UsageError("give --permission or --clear-permissions, not both")
    if parents and clear_parents:
        raise click.UsageError("give --parent or --clear-parents, not both")
    with command() as ctx, refused():
        role = rbac.role_by_name(ctx.session, name)
        before = _role_row(load_snapshot(ctx.session), role)
        if description is None and not (
            permissions or clear_permissions or parents or clear_parents
        ):
            click.echo("nothing changed")
            return
        rbac.update_role(
            ctx.session,
            role,
            description=description,
            permissions=list(permissions) if permissions or clear_permissions else None,
            parents=list(parents) if parents or clear_parents else None,
        )
        after = _role_row(load_snapshot(ctx.session), role)
        ctx.session.commit()
    changed = [
        key for key in ("description", "permissions", "parents") if before[key] != after[key]
    ]
    click.echo(f"updated role {name}: {', '.join(changed)}" if changed else "nothing changed")


@roles.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_role(name: str, yes: bool) -> None:
    """Delete a role with its assignments; roles that inherited it no longer do. Built-in
    roles cannot be deleted."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        role = rbac.role_by_name(ctx.session, name)
        if not yes and not role.builtin:  # a built-in role is refused without asking
            holders = _holders(ctx.session, role)
            count = sum(len(items) for items in holders.values())
            # No transaction open (nor, on SQLite, the write lock) while a person answers.
            ctx.session.rollback()
            click.confirm(f"Delete role {name} and its {plural(count, 'assignment')}?", abort=True)
            role = rbac.role_by_name(ctx.session, name)
        rbac.delete_role(ctx.session, role)
        ctx.session.commit()
    click.echo(f"deleted role {name}")


@roles.command("assign")
@click.argument("role")
@holder_options
def assign_role(
    role: str, user: str | None, group: str | None, client: str | None, scope: str | None
) -> None:
    """Give a role to a user, a group or a client, everywhere or within one client."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    require_one_holder(user, group, client)
    with command() as ctx, refused():
        found = rbac.role_by_name(ctx.session, role)
        principal, label = resolve_holder(ctx.session, user, group, client)
        try:
            rbac.assign(ctx.session, found, principal, scope=client_scope(ctx.session, scope))
        except Conflict:
            raise Conflict(f"{label} already has the role {role}{within(scope)}") from None
        ctx.session.commit()
    click.echo(f"gave role {role} to {label}{within(scope)}")


@roles.command("unassign")
@click.argument("role")
@holder_options
def unassign_role(
    role: str, user: str | None, group: str | None, client: str | None, scope: str | None
) -> None:
    """Take a role back from a user, a group or a client. Refused when it would leave no
    active administrator."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    require_one_holder(user, group, client)
    with command() as ctx, refused():
        found = rbac.role_by_name(ctx.session, role)
        principal, label = resolve_holder(ctx.session, user, group, client)
        try:
            assignment = rbac.find_assignment(
                ctx.session, found, principal, client_scope(ctx.session, scope)
            )
        except NotFound:
            raise NotFound(f"{label} does not have the role {role}{within(scope)}") from None
        rbac.unassign(ctx.session, assignment)
        ctx.session.commit()
    click.echo(f"took role {role} from {label}{within(scope)}")
