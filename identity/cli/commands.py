"""init, serve, check and purge.

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from identity.cli import app_context, cli
from identity.exceptions import ConfigError


@cli.command()
@click.option(
    "--admin-email",
    default="admin@example.com",
    show_default=True,
    help="Email of the bootstrap admin created when the database has no users.",
)
def init(admin_email: str) -> None:
    """Create or upgrade the database and create the keys the server needs (idempotent).

    On an empty database it also creates a bootstrap admin and prints its password once.
    """
    # Deferred for start-up time, as in every command: only what this command uses.
    from sqlalchemy import func, select

    from identity import migrate
    from identity.accounts.service import Accounts
    from identity.cli.context import command, database_label
    from identity.models.user import User
    from identity.oauth.keys import ensure_keys
    from identity.rbac.service import ensure_builtin_roles

    with command(schema=False, create=True) as ctx:
        session = ctx.session
        before = migrate.current_revision(ctx.engine)
        migrate.upgrade(ctx.engine)
        after = migrate.current_revision(ctx.engine)
        label = database_label(ctx.settings)
        if before is None:
            click.echo(f"database: {label}: created the schema at revision {after}")
        elif before != after:
            click.echo(f"database: {label}: upgraded the schema from revision {before} to {after}")
        else:
            click.echo(f"database: {label} (up to date, revision {after})")
        ensure_builtin_roles(session)
        rt = ctx.runtime
        # RS256 is mandatory in OpenID Connect; the configured algorithm signs access tokens.
        for key in ensure_keys(
            session, rt.keys.cipher, tuple(dict.fromkeys((rt.settings.signing_alg, "RS256")))
        ):
            click.echo(f"signing key created: {key.alg} {key.kid}")
        if session.execute(select(func.count()).select_from(User)).scalar_one() == 0:
            password = secrets.token_urlsafe(18)
            user = Accounts(session, rt).create_user(
                admin_email, password, roles=["admin"], verified=True, name="Administrator"
            )
            click.echo("bootstrap admin created; this password is shown only once:")
            click.echo(f"  email:    {user.email}")
            click.echo(f"  password: {password}")
            click.echo(
                f"  console:  {rt.settings.issuer.rstrip('/')}/admin/"
                " (a second factor is set up at the first sign-in)"
            )
        session.commit()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes [IDENTITY_WORKERS].")
@click.option(
    "--server",
    type=click.Choice(["granian", "gunicorn"]),
    help="HTTP server: granian (the default: HTTP in Rust, threads per worker) or gunicorn "
    "(sync workers).",
)
def serve(host: str, port: int, workers: int | None, server: str | None) -> None:
    """Serve in production (granian or gunicorn; SIGTERM drains gracefully)."""
    from identity import migrate
    from identity.cli.context import load
    from identity.extensions import db
    from identity.serving import (
        ServeError,
        check_address,
        default_server,
        prepare_metrics_dir,
        run,
    )

    try:
        check_address(host, port)  # at once, before the app: and again before serving
        # Before the app imports prometheus_client: the workers count in one folder.
        prepare_metrics_dir(settings := load())
    except ServeError as error:
        raise click.ClickException(str(error)) from None
    with app_context(settings) as app:
        if not migrate.is_current(db.engine):
            raise click.ClickException("the database schema is not current; run `identity init`")
        require_signing_keys()
        settings = app.extensions["identity"].settings
        # The workers are forked from this process: close its connection first, so that no
        # worker inherits (and later closes) a socket it does not own.
        db.engine.dispose()
        server = server or default_server()  # after the app set up the JSON log lines
    try:
        run(settings, host=host, port=port, workers=workers or settings.workers, server=server)
    except ServeError as error:  # the address is taken, or not this host's
        raise click.ClickException(str(error)) from None


def require_signing_keys() -> None:
    """Refuse to run without usable signing keys (REL-09): a missing key or a secret key
    that cannot decrypt them is a clear error now, never an ephemeral key later."""
    from identity.extensions import db
    from identity.runtime import runtime

    rt = runtime()
    try:
        ring = rt.keys.ring(db.session())
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    missing = [
        alg for alg in dict.fromkeys((rt.settings.signing_alg, "RS256")) if alg not in ring.signing
    ]
    if missing:
        raise click.ClickException(
            f"no active {', '.join(missing)} signing key; run `identity init`"
        )


@cli.command()
@click.option(
    "--docs",
    "docs_path",
    type=click.Path(path_type=Path),
    help="Write the settings reference (Markdown) to this file.",
)
def check(docs_path: Path | None) -> None:
    """Validate the configuration and the database connection, then say what is in use:
    the instance folder, the database and its schema revision, and the services."""
    if docs_path is not None:
        from identity.settings import settings_reference

        docs_path.write_text(settings_reference())
        click.echo(f"wrote {docs_path}")
        return
    # Deferred for start-up time: check builds the whole app, the surest validation.
    from identity import migrate
    from identity.cli.context import (
        database_error,
        database_label,
        load,
        refuse_missing_database,
    )
    from identity.extensions import db

    settings = load()
    click.echo(f"env: {settings.env}")
    click.echo(f"issuer: {settings.issuer}")
    click.echo(f"instance folder: {settings.instance_path.absolute()}")
    click.echo(f"database: {database_label(settings)}")
    refuse_missing_database(settings)
    with app_context(settings):
        try:
            current = migrate.current_revision(db.engine)
        except Exception as error:  # noqa: BLE001 - whatever failed, say what and stop
            raise click.ClickException(
                f"database unreachable: {database_error(error, settings)}"
            ) from None
        head = migrate.head_revision(db.engine)
        click.echo(
            f"schema: revision {current} (the newest)"
            if current == head
            else f"schema: revision {current}, the newest is {head}"
        )
        if current == head:
            require_signing_keys()
    click.echo(f"rate limits: {settings.ratelimit_storage_url.split('://')[0]}")
    click.echo(f"registration: {settings.registration}; mail: {settings.mail_backend}")
    if settings.secret_key is None:
        click.echo(
            f"secret key: generated, in {(settings.instance_path / 'secret_key').absolute()}"
        )
    if current != head:
        raise click.ClickException("the database schema is not current; run `identity init`")
    click.echo("configuration OK")


@cli.command()
def purge() -> None:
    """Delete expired codes, tokens, sessions and other short-lived rows, and apply the
    retention periods of personal data (safe to repeat)."""
    from datetime import timedelta

    from identity.cli.context import command
    from identity.maintenance import purge as purge_expired
    from identity.privacy import retention

    with command() as ctx:
        grace = timedelta(days=ctx.settings.retention_expired_grants_days)
        counts = purge_expired(ctx.session, ctx.settings.session_idle_timeout, grace=grace)
        counts.update(retention.apply(ctx.session, ctx.runtime))
    for table, count in counts.items():
        click.echo(f"{table}: {count}")
