"""What the commands of role-based access control share (identity.cli.roles_commands,
groups_commands and authz_commands): the services' refusals as one line, finding the user,
client, holder or subject a command names, DashedPositionals, and output helpers.

The operator may do anything (``actor=None`` in identity.rbac.service); the service still
keeps its rules: role inheritance never loops, groups form a tree, built-in roles keep
their permissions, an active administrator always remains. Its refusals end the command
with one line (exit 1), through ``refused()``.

This module imports only click and light modules at the top, and each helper what it uses
inside its function: deferred for start-up time, so that `identity --help` loads no web or
database stack (see identity.cli).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from identity.exceptions import IdentityError, NotFound

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.orm import Session

    from identity.models.oauth import Client
    from identity.models.user import User
    from identity.rbac.policy import PrincipalKind
    from identity.rbac.service import Principal


class DashedPositionals(click.Command):
    """A command whose arguments (more than one) may start with a dash, as a client_id may
    (random base64url: one in 32 does). identity.cli.DashedArguments moves such a word to
    the end, which suits one argument; here the options are put first and every argument
    after ``--``, each in its place. A word with two dashes stays an option, so that a
    misspelt one is still refused."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = [param for param in self.get_params(ctx) if isinstance(param, click.Option)]
        with_value = {name for o in options if not o.is_flag and not o.count for name in o.opts}
        names = {name for o in options for name in (*o.opts, *o.secondary_opts)}
        dashed = any(
            len(arg) > 1 and arg.startswith("-") and not arg.startswith("--") and arg not in names
            for arg in args
        )
        if dashed and "--" not in args:
            before: list[str] = []
            positional: list[str] = []
            words = iter(args)
            for arg in words:
                if arg in with_value:
                    value = next(words, None)  # whatever it starts with
                    before += [arg] if value is None else [arg, value]
                elif arg.startswith("--") or arg in names:
                    before.append(arg)
                else:
                    positional.append(arg)
            args = [*before, "--", *positional]
        return super().parse_args(ctx, args)


@contextmanager
def refused() -> Iterator[None]:
    """The services' refusals (invalid input, unknown names, conflicts) as one line."""
    try:
        yield
    except IdentityError as error:
        raise click.ClickException(error.message) from None


def get_user(session: Session, email: str) -> User:
    # Deferred for start-up time, as every import of the helpers here and of the commands.
    from identity.accounts.management import find_user

    return find_user(session, email)


def get_client(session: Session, client_id: str) -> Client:
    from sqlalchemy import select

    from identity.models.oauth import Client

    row = session.execute(select(Client).where(Client.client_id == client_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no client {client_id}")
    return row


def client_scope(session: Session, client_id: str | None) -> uuid.UUID | None:
    return get_client(session, client_id).id if client_id is not None else None


def client_ids(session: Session) -> dict[uuid.UUID, str]:
    from sqlalchemy import select

    from identity.models.oauth import Client

    return {pk: client_id for pk, client_id in session.execute(select(Client.id, Client.client_id))}


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def within(scope: str | None) -> str:
    return f" within client {scope}" if scope else ""


def resolve_holder(
    session: Session, user: str | None, group: str | None, client: str | None
) -> tuple[Principal, str]:
    """The principal of --user, --group or --client, and how to name it."""
    from identity.rbac.service import Principal, group_by_name

    if user is not None:
        found = get_user(session, user)
        return Principal("user", found.id), f"user {found.email}"
    if group is not None:
        return Principal("group", group_by_name(session, group).id), f"group {group}"
    assert client is not None
    return Principal("client", get_client(session, client).id), f"client {client}"


def require_one_holder(user: str | None, group: str | None, client: str | None) -> None:
    if sum(value is not None for value in (user, group, client)) != 1:
        raise click.UsageError("give exactly one of --user, --group and --client")


def holder_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--user", metavar="EMAIL", help="A user, by email address."),
            click.option("--group", metavar="NAME", help="A group: its members hold the role."),
            click.option("--client", metavar="CLIENT_ID", help="A client's own service account."),
            click.option(
                "--scope",
                metavar="CLIENT_ID",
                help="Only within this client (an application role); default: everywhere.",
            ),
        ]
    ):
        function = option(function)
    return function


def resolve_subject(session: Session, subject: str) -> tuple[PrincipalKind, uuid.UUID, str]:
    """A user's email (anything with "@") or a client_id: (kind, id, name in the path)."""
    if "@" in subject:
        try:
            user = get_user(session, subject)
        except NotFound as error:
            try:
                return "client", get_client(session, subject).id, subject
            except NotFound:
                raise error from None
        return "user", user.id, user.email
    try:
        return "client", get_client(session, subject).id, subject
    except NotFound:
        raise NotFound(f"no client {subject} (name a user by their email address)") from None
