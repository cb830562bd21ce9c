"""identity gdpr ...: the data inventory, subject access requests and erasure.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from identity.cli import cli

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from identity.models.user import User


@cli.group()
def gdpr() -> None:
    """Data inventory, data export and erasure (GDPR)."""


@gdpr.command("inventory")
@click.option("--markdown", is_flag=True, help="Print the table docs/privacy.md holds.")
@click.option(
    "--docs",
    type=click.Path(dir_okay=False, exists=True),
    help="Rewrite the generated table inside this Markdown file.",
)
@click.option(
    "--schema",
    type=click.Path(dir_okay=False),
    help="Write the JSON Schema of data exports (data.json) to this file.",
)
def inventory(markdown: bool, docs: str | None, schema: str | None) -> None:
    """Every table and what it holds of people: purpose, retention, what erasure does,
    and each personal column's category and whether an export includes it."""
    # Deferred for start-up time, as every import of the commands below.
    import json
    from pathlib import Path

    from identity.privacy import records
    from identity.privacy.export import schema as export_schema
    from identity.privacy.inventory import INVENTORY, personal_columns

    if schema:
        Path(schema).write_text(json.dumps(export_schema(), indent=2, sort_keys=True) + "\n")
        click.echo(f"wrote {schema}")
        return
    if docs:
        path = Path(docs)
        path.write_text(records.replace_block(path.read_text()))
        click.echo(f"updated {docs}")
        return
    if markdown:
        click.echo(records.markdown(), nl=False)
        return
    for name, table in sorted(INVENTORY.items()):
        columns = ", ".join(personal_columns(name)) or "-"
        click.echo(f"{name}: {table.erasure}; personal: {columns}")


def _find(session: Session, who: str) -> User:
    """USER on the command line: an email address or a user id."""
    import uuid

    from identity.accounts.management import find_user
    from identity.exceptions import InvalidInput, NotFound
    from identity.models.user import User

    try:
        user_id = uuid.UUID(who)
    except ValueError:
        try:
            return find_user(session, who)
        except (InvalidInput, NotFound) as error:
            raise click.ClickException(error.message) from None
    user = session.get(User, user_id)
    if user is None:
        raise click.ClickException(f"no user with id {who}")
    return user


@gdpr.command("erase")
@click.argument("user")
@click.option("--reason", required=True, help="Why (kept in the audit trail: no personal data).")
@click.option("--now", is_flag=True, help="Erase at once instead of after the cooling-off period.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(user: str, reason: str, now: bool, yes: bool) -> None:
    """Erase a person's account (GDPR Art. 17); USER is an email address or a user id.

    Without --now the account is disabled and erased after IDENTITY_GDPR_COOLING_OFF_DAYS
    (`identity gdpr cancel-erasure USER` calls it off); with --now it is erased at once.
    Either way its sessions end and its grants are revoked; at erasure, clients are told,
    the audit trail keeps its records with the person taken out, and the person receives
    a last mail with the receipt id, which is printed.
    """
    from identity.cli.context import command
    from identity.exceptions import Conflict
    from identity.privacy.erasure import Erasure

    with command() as ctx:
        target = _find(ctx.session, user)
        label = f"{target.email} ({target.id})"
        if not yes:
            ctx.session.rollback()  # no transaction open while a person answers
            when = "now" if now else f"in {ctx.settings.gdpr_cooling_off_days} days"
            click.confirm(f"Erase {label} {when}, for good?", abort=True)
            target = _find(ctx.session, user)
        erasure = Erasure(ctx.session, ctx.runtime)
        try:
            if now:
                receipt = erasure.erase(target, reason=reason)
            else:
                job = erasure.request(target, reason=reason, by_operator=True)
        except Conflict as error:  # the last active administrator (AUTHZ-08)
            raise click.ClickException(error.message) from None
        ctx.session.commit()
    if now:
        click.echo(f"erased {label}: receipt {receipt.receipt_id}")
    else:
        click.echo(f"{label} will be erased on {job.run_after.isoformat()}; disabled until then")


@gdpr.command("cancel-erasure")
@click.argument("user")
def cancel_erasure(user: str) -> None:
    """Call off a scheduled erasure; the account is enabled again if the request disabled
    it. USER is an email address or a user id."""
    from identity.cli.context import command
    from identity.privacy.erasure import Erasure

    with command() as ctx:
        target = _find(ctx.session, user)
        cancelled = Erasure(ctx.session, ctx.runtime).cancel(target)
        ctx.session.commit()
        label = target.email
    if not cancelled:
        raise click.ClickException(f"no erasure of {label} is scheduled")
    click.echo(f"erasure of {label} cancelled")


@gdpr.command("reapply-erasures")
def reapply_erasures() -> None:
    """After restoring a backup older than some erasures: erase those accounts again.

    The erasure ledger (no personal data: a keyed hash of each erased id, with its receipt
    and time) outlives restores of newer data; accounts it names are erased again, without
    mail or client notices (those went out the first time). Run it after every restore.
    """
    from identity.cli.context import command
    from identity.privacy.erasure import Erasure

    with command() as ctx:
        receipts = Erasure(ctx.session, ctx.runtime).reapply()
        ctx.session.commit()
    click.echo(f"erased again: {len(receipts)} account{'s' if len(receipts) != 1 else ''}")
    for receipt in receipts:
        click.echo(f"  receipt {receipt}")


@gdpr.command("export")
@click.argument("user")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the ZIP (readable by its owner only).",
)
def export(user: str, output: str) -> None:
    """Write a person's data export (GDPR Art. 15 and 20), for a subject access request:
    the same signed ZIP the person downloads themselves. USER is an email or a user id."""
    import os
    from pathlib import Path

    from identity.cli.context import command
    from identity.exceptions import InvalidInput
    from identity.privacy.inventory import exported_tables
    from identity.privacy.jobs import export_for_operator

    with command() as ctx:
        target = _find(ctx.session, user)
        tables = exported_tables()
        with click.progressbar(length=len(tables), label="gathering", file=sys.stderr) as bar:
            try:
                # Audited; the operator at the command (no actor) may export anyone.
                packed = export_for_operator(
                    ctx.session, ctx.runtime, target, progress=lambda _: bar.update(1)
                )
            except InvalidInput as error:  # no signing key
                raise click.ClickException(error.message) from None
        path = Path(output)
        temporary = path.with_name(f".{path.name}.partial")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(packed)
            temporary.replace(path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
        ctx.session.commit()
    click.echo(f"exported {len(tables)} tables about {target.id} to {output}")


@gdpr.command("verify-bundle")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def verify_bundle(file: str) -> None:
    """Check an export bundle: the server's signature over its manifest (with the keys it
    publishes) and every file's hash. Exits 0 when it is genuine and whole, 1 when not."""
    from pathlib import Path

    from identity.cli.context import command
    from identity.privacy import bundle

    data = Path(file).read_bytes()
    with command() as ctx:
        try:
            kid = bundle.kid_of(data)
            found = ctx.runtime.keys.ring(ctx.session).verifying.get(kid)
            if found is None:
                raise bundle.BundleError(f"key {kid} is not one this server publishes")
            manifest = bundle.verify(data, *found)
        except bundle.BundleError as error:
            raise click.ClickException(f"{file} is not genuine: {error}") from None
    click.echo(
        f"{file}: genuine, signed by {manifest.get('issuer')} with key {kid} for subject "
        f"{manifest.get('subject')} at {manifest.get('generated_at')}"
    )
