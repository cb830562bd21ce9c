"""init, serve and check."""

from __future__ import annotations

import secrets
from pathlib import Path

import click
from sqlalchemy import func, select

from identity.cli import app_context, cli
from identity.errors import ConfigError
from identity.settings import load_settings, settings_reference

BUILTIN_ROLES = {"admin": "Full administrative access."}


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
    from identity import migrate
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.models.user import Role, User
    from identity.oauth.keys import ensure_keys
    from identity.runtime import runtime

    with app_context():
        migrate.upgrade(db.engine)
        for name, description in BUILTIN_ROLES.items():
            if (
                db.session.execute(select(Role).where(Role.name == name)).scalar_one_or_none()
                is None
            ):
                db.session.add(Role(name=name, description=description))
        db.session.flush()
        click.echo(f"database: {db.engine.url.render_as_string(hide_password=True)} (up to date)")
        rt = runtime()
        # RS256 is mandatory in OpenID Connect; the configured algorithm signs access tokens.
        for key in ensure_keys(
            db.session, rt.keys.cipher, tuple(dict.fromkeys((rt.settings.signing_alg, "RS256")))
        ):
            click.echo(f"signing key created: {key.alg} {key.kid}")
        if db.session.execute(select(func.count()).select_from(User)).scalar_one() == 0:
            password = secrets.token_urlsafe(18)
            user = Accounts(db.session, runtime()).create_user(
                admin_email, password, roles=["admin"], verified=True, name="Administrator"
            )
            click.echo("bootstrap admin created; this password is shown only once:")
            click.echo(f"  email:    {user.email}")
            click.echo(f"  password: {password}")
        db.session.commit()


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
    from identity.extensions import db
    from identity.server import default_server, run

    with app_context() as app:
        if not migrate.is_current(db.engine):
            raise click.ClickException("the database schema is not current; run `identity init`")
        require_signing_keys()
        settings = app.extensions["identity"].settings
        # The workers are forked from this process: close its connection first, so that no
        # worker inherits (and later closes) a socket it does not own.
        db.engine.dispose()
        server = server or default_server()  # after the app set up the JSON log lines
    run(settings, host=host, port=port, workers=workers or settings.workers, server=server)


def require_signing_keys() -> None:
    """Refuse to run without usable signing keys (REL-09): a missing key or a secret key
    that cannot decrypt them is a clear error now, never an ephemeral key later."""
    from identity.extensions import db
    from identity.runtime import runtime

    rt = runtime()
    try:
        ring = rt.keys.ring(db.session)
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
    """Validate the configuration and the database connection, then say what is in use."""
    from identity import migrate
    from identity.extensions import db

    if docs_path is not None:
        docs_path.write_text(settings_reference())
        click.echo(f"wrote {docs_path}")
        return
    try:
        settings = load_settings()
    except ConfigError as error:
        raise click.ClickException(error.message) from None
    with app_context():
        try:
            current = migrate.current_revision(db.engine)
        except Exception as error:
            raise click.ClickException(f"database unreachable: {type(error).__name__}") from None
        head = migrate.head_revision(db.engine)
        if current == head:
            require_signing_keys()
    click.echo(f"env: {settings.env}")
    click.echo(f"issuer: {settings.issuer}")
    click.echo(
        f"database: {'sqlite' if settings.is_sqlite else 'postgresql'} "
        f"(revision {current}, newest {head})"
    )
    click.echo(f"rate limits: {settings.ratelimit_storage_url.split('://')[0]}")
    click.echo(f"registration: {settings.registration}; mail: {settings.mail_backend}")
    if settings.secret_key is None:
        click.echo("secret key: generated, stored under the instance folder")
    if current != head:
        raise click.ClickException("the database schema is not current; run `identity init`")
    click.echo("configuration OK")


@cli.command()
def purge() -> None:
    """Delete expired codes, tokens, sessions and other short-lived rows (safe to repeat)."""
    from identity.extensions import db
    from identity.maintenance import purge as purge_expired
    from identity.runtime import runtime

    with app_context():
        counts = purge_expired(db.session, runtime().settings.session_idle_timeout)
    for table, count in counts.items():
        click.echo(f"{table}: {count}")
