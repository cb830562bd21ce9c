"""identity backup create|verify|restore: the whole database in one encrypted file.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from identity.cli import cli

if TYPE_CHECKING:
    from identity.backup import Progress, Secret
    from identity.backup.contents import Header

MIN_PASSPHRASE = 12


@cli.group()
def backup() -> None:
    """Back up the whole database into one encrypted file, check a backup, restore one."""


def key_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The same two ways to give the key, on every backup command: exactly one."""
    function = click.option(
        "--key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A file holding a 32-byte key (raw, or 64 hex digits: openssl rand -hex 32).",
    )(function)
    return click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="Read the passphrase from the first line of standard input (asked without "
        "echo on a terminal).",
    )(function)


def _secret(passphrase_stdin: bool, key_file: Path | None, *, creating: bool = False) -> Secret:
    from identity.backup import BackupError, Secret

    if passphrase_stdin == (key_file is not None):
        raise click.UsageError("give exactly one of --passphrase-stdin and --key-file")
    try:
        if key_file is not None:
            return Secret.from_key_file(key_file)
        if sys.stdin.isatty():  # typed, not piped: not shown, and asked twice to create
            passphrase = click.prompt(
                "Passphrase", hide_input=True, confirmation_prompt=creating, err=True
            )
        else:
            passphrase = sys.stdin.readline().rstrip("\r\n")
        if not passphrase:
            raise click.ClickException("no passphrase on standard input")
        if creating and len(passphrase) < MIN_PASSPHRASE:
            raise click.ClickException(
                f"the passphrase must have at least {MIN_PASSPHRASE} characters"
            )
        return Secret.from_passphrase(passphrase)
    except BackupError as error:
        raise click.ClickException(error.message) from None


@contextmanager
def _progress(label: str) -> Iterator[Progress]:
    """A progress bar on standard error when it is a terminal; nothing in scripts."""
    from identity.backup import Progress

    class Bar(Progress):
        """Ends its line once every row is done, so that a next bar starts on its own."""

        bar: Any = None
        done = False

        def start(self, rows: int) -> None:
            if sys.stderr.isatty() and self.bar is None:
                self.bar = click.progressbar(length=rows, label=label, file=sys.stderr)
                self.bar.__enter__()

        def advance(self, table: str, rows: int) -> None:
            if self.bar is not None and not self.done:
                self.bar.update(rows)
                if self.bar.pos >= self.bar.length:
                    self.finish()

        def finish(self) -> None:
            if self.bar is not None and not self.done:
                self.done = True
                self.bar.__exit__(None, None, None)

    shown = Bar()
    try:
        yield shown
    finally:
        shown.finish()


@contextmanager
def _new_file(path: Path) -> Iterator[IO[bytes]]:
    """Written beside ``path``, readable by its owner only, renamed into place when
    complete: a failed backup leaves no partial file and the previous one stays."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
        raise


def _summary(header: Header, path: Path) -> str:
    tables, rows, size = len(header.tables), header.rows, path.stat().st_size
    return (
        f"{tables} table{'s' if tables != 1 else ''}, {rows} row{'s' if rows != 1 else ''}, "
        f"{size} bytes, schema revision {header.revision}, taken {header.created_at} "
        f"from {header.source}"
    )


@backup.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@key_options
def create(file: Path, passphrase_stdin: bool, key_file: Path | None) -> None:
    """Write a backup of every table to FILE, compressed and encrypted.

    The server may go on serving: the backup is one consistent snapshot. It holds
    everything in the database, with its schema revision, but not IDENTITY_SECRET_KEY,
    which the signing keys and sealed columns need: keep that too, apart from it.
    """
    # Deferred for start-up time, as every import of the commands below.
    from identity.backup import BackupError
    from identity.backup import create as create_backup
    from identity.cli.context import command
    from identity.database import create_snapshot_engine

    secret = _secret(passphrase_stdin, key_file, creating=True)
    with command() as ctx:
        engine = create_snapshot_engine(ctx.settings)
        try:
            with _progress("backing up") as shown, _new_file(file) as sink:
                header = create_backup(engine, sink, secret, shown)
        except BackupError as error:
            raise click.ClickException(error.message) from None
        finally:
            engine.dispose()
    click.echo(f"wrote {file}: {_summary(header, file)}")


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@key_options
def verify(file: Path, passphrase_stdin: bool, key_file: Path | None) -> None:
    """Check FILE without restoring it: decrypt and authenticate every part, read every
    row. Exits 1 naming the problem: a wrong passphrase or key, a file cut short or
    altered. Needs no database."""
    from identity.backup import BackupError
    from identity.backup import verify as verify_backup

    secret = _secret(passphrase_stdin, key_file)
    try:
        with _progress("checking") as shown:
            header = verify_backup(file, secret, shown)
    except BackupError as error:
        raise click.ClickException(f"{file}: {error.message}") from None
    click.echo(f"{file}: intact: {_summary(header, file)}")


@backup.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@key_options
@click.option(
    "--replace",
    is_flag=True,
    help="Restore into a database that is not empty: drop every table it has first, and "
    "all it holds (erasures its ledger knows are kept and done again).",
)
def restore(file: Path, passphrase_stdin: bool, key_file: Path | None, replace: bool) -> None:
    """Restore FILE into an empty database (IDENTITY_DATABASE_URL), SQLite or PostgreSQL.

    The whole file is checked first. The schema is made at the backup's revision, every
    row loaded, the schema upgraded if this version's is newer, and the accounts the
    erasure ledger names erased again. Stop every server of the database first.
    """
    from identity import audit
    from identity.backup import BackupError, NotEmpty
    from identity.backup import restore as restore_backup
    from identity.cli.context import command, database_label
    from identity.privacy.erasure import Erasure

    secret = _secret(passphrase_stdin, key_file)
    with command(schema=False, create=True) as ctx:
        try:
            with _progress("checking") as checking, _progress("restoring") as shown:
                restored = restore_backup(
                    ctx.engine, file, secret, replace=replace, checking=checking, progress=shown
                )
        except NotEmpty as error:
            raise click.ClickException(
                f"{error.message} ({database_label(ctx.settings)}); restore into an empty "
                "database, or add --replace to drop every table first (what they hold is lost)"
            ) from None
        except BackupError as error:
            raise click.ClickException(f"{file}: {error.message}") from None
        receipts = Erasure(ctx.session, ctx.runtime).reapply()
        header = restored.header
        audit.record(
            ctx.session,
            "backup.restored",
            revision=header.revision,
            taken_at=header.created_at,
            rows=header.rows,
            upgraded_to=restored.upgraded_to,
            erased_again=len(receipts),
        )
        ctx.session.commit()
    click.echo(f"restored {file}: {_summary(header, file)}")
    if restored.upgraded_to:
        click.echo(f"schema upgraded to revision {restored.upgraded_to}")
    if restored.ledger_kept:
        click.echo(f"kept {restored.ledger_kept} erasures newer than the backup")
    click.echo(f"erased again: {len(receipts)} account{'s' if len(receipts) != 1 else ''}")
