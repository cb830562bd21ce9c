"""identity audit ...: check the audit trail's hash chain, export its records.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from identity.cli import cli

if TYPE_CHECKING:
    from identity.audit import ChainCheck


class Moment(click.ParamType):
    """An ISO 8601 date or time: ``2026-11-30`` (midnight), ``2026-11-30T10:00:00Z`` or
    with an offset; one without an offset is UTC. Anything else is a usage error (exit 2)."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        except (TypeError, ValueError, OverflowError):
            self.fail(
                f"{value!r} is not an ISO 8601 date or time "
                "(e.g. 2026-11-30 or 2026-11-30T10:00:00Z)",
                param,
                ctx,
            )


@cli.group()
def audit() -> None:
    """Check and export the audit trail."""


def _describe(check: ChainCheck) -> dict[str, Any]:
    return {
        "intact": check.intact,
        "checked": check.checked,
        "seq": check.seq,
        "event": check.event,
        "occurred_at": check.occurred_at.isoformat() if check.occurred_at else None,
        "problem": check.problem,
        "detail": check.detail,
    }


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def verify(as_json: bool) -> None:
    """Check the audit trail's hash chain, up to its tip.

    Checks each record's hash, its link to the one before and its seq, and that the trail
    ends at the tip the audit_head table holds. Exits 0 when it is intact, 1 naming the
    first bad record when it is not.
    """
    # Deferred for start-up time, as every import of the commands below.
    from identity.audit import verify_chain
    from identity.cli.context import command

    with command() as ctx:
        check = verify_chain(ctx.session)
    if as_json:
        click.echo(json.dumps(_describe(check), indent=2))
        if not check.intact:
            sys.exit(1)
        return
    if check.intact:
        records = "record" if check.checked == 1 else "records"
        click.echo(f"{check.checked} {records} checked: intact")
        return
    which = (
        f"{check.event}, {check.occurred_at.isoformat()}"
        if check.occurred_at is not None
        else "missing"
    )
    before = (
        "1 record before it is" if check.checked == 1 else f"{check.checked} records before it are"
    )
    raise click.ClickException(
        f"the audit trail is broken at seq {check.seq} ({which}): {check.detail}; {before} intact"
    )


@audit.command("export")
@click.option("--since", type=Moment(), help="Only records that occurred at this time or later.")
@click.option("--until", type=Moment(), help="Only records that occurred before this time.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path, allow_dash=True),
    help="Write to this file instead of standard output.",
)
def export(since: datetime | None, until: datetime | None, output: Path | None) -> None:
    """Write the audit records as JSON lines, oldest first.

    --since and --until take an ISO 8601 date or time (2026-11-30, 2026-11-30T10:00:00Z);
    without an offset it is UTC.
    """
    from identity.audit import export as records
    from identity.cli.context import command

    if since is not None and until is not None and since >= until:
        raise click.BadParameter("must be later than --since", param_hint="'--until'")
    with command() as ctx, closing(records(ctx.session, since=since, until=until)) as found:
        # closing(): the rows' cursor ends before the session, even when writing stops early.
        lines = (json.dumps(record) + "\n" for record in found)
        if output is None or str(output) == "-":
            _write_stdout(lines)
            return
        count = _write_file(output, lines)
    click.echo(f"exported {count} {'record' if count == 1 else 'records'} to {output}")


def _write_stdout(lines: Iterable[str]) -> None:
    try:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as cat does, and keep Python from
        # complaining when it flushes standard output at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def _write_file(path: Path, lines: Iterable[str]) -> int:
    """Write to a temporary file beside ``path``, readable by its owner only (the trail
    holds addresses and emails), and rename it into place once complete: a failed export
    leaves no partial file behind. Returns the number of lines written."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
    count = 0
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            for line in lines:
                file.write(line)
                count += 1
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
        raise
    return count
