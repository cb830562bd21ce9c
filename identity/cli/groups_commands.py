"""identity groups ...: the operator's side of groups (which nest) and their members,
beside the admin API. What the commands of role-based access control share (refusals as
one line, finding users and clients) is in identity.cli.rbac_common.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from identity.cli import cli
from identity.cli.rbac_common import client_ids, get_user, refused, within
from identity.exceptions import Conflict, NotFound

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.orm import Session

    from identity.models.rbac import Group


@cli.group()
def groups() -> None:
    """Manage groups (which nest) and their members."""


def _group_row(session: Session, group: Group) -> dict[str, Any]:
    from identity.models.rbac import Group

    parent = session.get(Group, group.parent_id) if group.parent_id else None
    return {
        "id": str(group.id),
        "name": group.name,
        "description": group.description,
        "parent": parent.name if parent else None,
    }


def _show_group(session: Session, group: Group) -> dict[str, Any]:
    """The group, its members, the roles it holds and those its ancestors give it."""
    from identity.rbac.service import members_of
    from identity.rbac.store import load_snapshot

    snapshot = load_snapshot(session)
    clients = client_ids(session)

    def grants(group_id: uuid.UUID) -> list[dict[str, Any]]:
        items = [
            {
                "role": snapshot.roles[grant.role].name,
                "scope": clients.get(grant.scope) if grant.scope else None,
            }
            for grant in snapshot.grants.get(group_id, ())
            if grant.role in snapshot.roles
        ]
        return sorted(items, key=lambda item: (item["role"], item["scope"] or ""))

    chain = snapshot.group_chain(group.id)
    return {
        **_group_row(session, group),
        "members": [user.email for user in members_of(session, group)],
        "subgroups": sorted(g.name for g in snapshot.groups.values() if g.parent == group.id),
        "roles": grants(group.id),
        "inherited_roles": [
            {**item, "group": ancestor.name}
            for ancestor in chain[1:]
            for item in grants(ancestor.id)
        ],
    }


@groups.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_groups(as_json: bool) -> None:
    """List groups by name, with the group each is inside."""
    from sqlalchemy import select

    from identity.cli.context import command
    from identity.models.rbac import Group

    with command() as ctx:
        rows = [
            _group_row(ctx.session, group)
            for group in ctx.session.execute(select(Group).order_by(Group.name)).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        inside = f"inside {row['parent']}" if row["parent"] else "-"
        click.echo(f"{row['name']}  {inside}  {row['description'] or '-'}")


@groups.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show_group(name: str, as_json: bool) -> None:
    """Show a group: the group it is inside, its members, its subgroups, and the roles its
    members get from it and from the groups it is inside."""
    from identity.cli.context import command
    from identity.rbac.service import group_by_name

    with command() as ctx, refused():
        row = _show_group(ctx.session, group_by_name(ctx.session, name))
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return

    def roles_text(items: list[dict[str, Any]]) -> str:
        def one(item: dict[str, Any]) -> str:
            origin = f" (from {item['group']})" if "group" in item else ""
            return f"{item['role']}{within(item['scope'])}{origin}"

        return ", ".join(one(item) for item in items) or "-"

    click.echo(f"name:        {row['name']}")
    click.echo(f"description: {row['description'] or '-'}")
    click.echo(f"inside:      {row['parent'] or '-'}")
    click.echo(f"members:     {', '.join(row['members']) or '-'}")
    click.echo(f"subgroups:   {', '.join(row['subgroups']) or '-'}")
    click.echo(f"roles:       {roles_text(row['roles'])}")
    click.echo(f"inherited:   {roles_text(row['inherited_roles'])}")


@groups.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the group is.")
@click.option("--parent", metavar="GROUP", help="Put the group inside this group.")
def create_group(name: str, description: str, parent: str | None) -> None:
    """Create a group. Members of a group inside another get that group's roles too."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        rbac.create_group(ctx.session, name, description=description, parent=parent)
        ctx.session.commit()
    click.echo(f"created group {name}" + (f" inside {parent}" if parent else ""))


@groups.command("update")
@click.argument("name")
@click.option("--description", help="What the group is.")
@click.option("--parent", metavar="GROUP", help="Move the group inside this group.")
@click.option("--no-parent", is_flag=True, help="Move the group to the top (inside none).")
def update_group(name: str, description: str | None, parent: str | None, no_parent: bool) -> None:
    """Change a group's description, or move it inside another group or to the top.
    Refused when groups would loop."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    if parent is not None and no_parent:
        raise click.UsageError("give --parent or --no-parent, not both")
    with command() as ctx, refused():
        group = rbac.group_by_name(ctx.session, name)
        if description is None and parent is None and not no_parent:
            click.echo("nothing changed")
            return
        rbac.update_group(
            ctx.session, group, description=description, parent=parent, clear_parent=no_parent
        )
        ctx.session.commit()
    changed = ["description"] if description is not None else []
    if parent is not None or no_parent:
        changed.append("parent")
    click.echo(f"updated group {name}: {', '.join(changed)}")


@groups.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_group(name: str, yes: bool) -> None:
    """Delete a group with the groups inside it; their members lose the roles they had
    through them (the users themselves stay)."""
    from identity.cli.context import command
    from identity.rbac import service as rbac
    from identity.rbac.store import load_snapshot

    with command() as ctx, refused():
        group = rbac.group_by_name(ctx.session, name)
        if not yes:
            snapshot = load_snapshot(ctx.session)
            inside = [
                g.name
                for g in snapshot.groups.values()
                if g.id != group.id and group.id in {a.id for a in snapshot.group_chain(g.id)}
            ]
            also = f" and the groups inside it ({', '.join(sorted(inside))})" if inside else ""
            ctx.session.rollback()
            click.confirm(f"Delete group {name}{also}?", abort=True)
            group = rbac.group_by_name(ctx.session, name)
        rbac.delete_group(ctx.session, group)
        ctx.session.commit()
    click.echo(f"deleted group {name}")


@groups.command("add-member")
@click.argument("name")
@click.argument("email")
def add_member(name: str, email: str) -> None:
    """Add a user to a group."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        group = rbac.group_by_name(ctx.session, name)
        user = get_user(ctx.session, email)
        address = user.email
        try:
            rbac.add_member(ctx.session, group, user)
        except Conflict:
            raise Conflict(f"{address} is already in {name}") from None
        ctx.session.commit()
    click.echo(f"added {address} to {name}")


@groups.command("remove-member")
@click.argument("name")
@click.argument("email")
def remove_member(name: str, email: str) -> None:
    """Remove a user from a group. Refused when it would leave no active administrator."""
    from identity.cli.context import command
    from identity.rbac import service as rbac

    with command() as ctx, refused():
        group = rbac.group_by_name(ctx.session, name)
        user = get_user(ctx.session, email)
        address = user.email
        try:
            rbac.remove_member(ctx.session, group, user)
        except NotFound:
            raise NotFound(f"{address} is not in {name}") from None
        ctx.session.commit()
    click.echo(f"removed {address} from {name}")
