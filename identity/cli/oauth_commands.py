"""identity clients ... and identity keys ..."""

from __future__ import annotations

import json

import click

from identity.cli import app_context, cli
from identity.errors import InvalidInput, NotFound
from identity.oauth.keys import ALGORITHMS


@cli.group()
def clients() -> None:
    """Manage OAuth 2.0 / OpenID Connect clients (relying parties)."""


@clients.command("create")
@click.option("--name", required=True, help="Name shown to users on the consent page.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="Exact redirect URI (repeatable).",
)
@click.option(
    "--post-logout-redirect-uri",
    "logout_uris",
    multiple=True,
    metavar="URI",
    help="Allowed after RP-initiated logout (repeatable).",
)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    metavar="TYPE",
    help="authorization_code (default), refresh_token, client_credentials, "
    "urn:ietf:params:oauth:grant-type:device_code (repeatable).",
)
@click.option(
    "--scope",
    default="openid profile email",
    show_default=True,
    help="Scopes the client may request.",
)
@click.option(
    "--auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
    help="Token endpoint authentication; none makes a public client (PKCE).",
)
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File(),
    help="JWK Set file with the client's public keys (private_key_jwt).",
)
@click.option("--jwks-uri", help="https URL of the client's JWK Set (private_key_jwt).")
@click.option(
    "--id-token-alg",
    type=click.Choice(ALGORITHMS),
    help="ID token signing algorithm [default: IDENTITY_SIGNING_ALG].",
)
@click.option("--first-party", is_flag=True, help="Trusted first-party app: no consent page.")
@click.option("--resource-server", is_flag=True, help="May introspect any token.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE",
    help="Role of the client's own service account (repeatable).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"client_id": ..., "client_secret": ...}.'
)
def create_client(
    name: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    scope: str,
    auth_method: str,
    jwks_file: click.utils.LazyFile | None,
    jwks_uri: str | None,
    id_token_alg: str | None,
    first_party: bool,
    resource_server: bool,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client. A generated secret is shown once and stored only as a hash."""
    from identity.extensions import db
    from identity.oauth import clients as client_service
    from identity.oauth.metadata import normalize_metadata
    from identity.oauth.scopes import KNOWN_SCOPES
    from identity.runtime import runtime

    raw: dict[str, object] = {
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(logout_uris),
        "grant_types": list(grant_types) or ["authorization_code"],
        "scope": scope,
        "token_endpoint_auth_method": auth_method,
    }
    if jwks_file is not None:
        raw["jwks"] = json.load(jwks_file)
    if jwks_uri:
        raw["jwks_uri"] = jwks_uri
    with app_context():
        settings = runtime().settings
        if id_token_alg:
            raw["id_token_signed_response_alg"] = id_token_alg
        try:
            meta = normalize_metadata(
                raw,
                known_scopes=KNOWN_SCOPES,
                signing_algs=ALGORITHMS,
                default_id_token_alg=settings.signing_alg,
            )
            created = client_service.create_client(
                db.session,
                name=name,
                meta=meta,
                first_party=first_party,
                resource_server=resource_server,
                roles=roles,
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        out = {"client_id": created.client.client_id}
        if created.client_secret:
            out["client_secret"] = created.client_secret
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"client_id:     {out['client_id']}")
        if "client_secret" in out:
            click.echo(f"client_secret: {out['client_secret']}  (shown only now)")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_clients(as_json: bool) -> None:
    """List registered clients."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.oauth import Client
    from identity.oauth.clients import describe

    with app_context():
        rows = [
            describe(r)
            for r in db.session.execute(select(Client).order_by(Client.created_at)).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        flags = [f for f in ("first_party", "resource_server") if row[f]]
        click.echo(
            f"{row['client_id']}  {row['client_name']}  "
            f"{' '.join(row['grant_types'])}  {' '.join(flags)}"
        )


@clients.command("show")
@click.argument("client_id")
def show_client(client_id: str) -> None:
    """Show a client's registration as JSON (never its secret)."""
    from identity.extensions import db
    from identity.oauth import clients as client_service

    with app_context():
        try:
            click.echo(
                json.dumps(
                    client_service.describe(client_service.find(db.session, client_id)), indent=2
                )
            )
        except NotFound as error:
            raise click.ClickException(error.message) from None


@clients.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_client(client_id: str, yes: bool) -> None:
    """Delete a client with its codes, refresh tokens and consents."""
    from identity.extensions import db
    from identity.oauth import clients as client_service

    if not yes:
        click.confirm(f"Delete client {client_id} and every grant it holds?", abort=True)
    with app_context():
        try:
            client_service.delete_client(db.session, client_service.find(db.session, client_id))
        except NotFound as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"client_id": ..., "client_secret": ...}.'
)
def rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace a client's secret; the old one stops working (within 10 s on every instance)."""
    from identity.extensions import db
    from identity.oauth import clients as client_service

    with app_context():
        try:
            secret = client_service.rotate_secret(
                db.session, client_service.find(db.session, client_id)
            )
        except (InvalidInput, NotFound) as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
    if as_json:
        click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
    else:
        click.echo(f"client_secret: {secret}  (shown only now)")


@cli.group()
def keys() -> None:
    """Manage the signing keys (JWKS)."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_keys(as_json: bool) -> None:
    """List signing keys with their state: next, active, retired or unpublished."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.oauth import SigningKey
    from identity.oauth.keys import key_status

    now = utcnow()
    with app_context():
        rows = [
            {
                "kid": k.kid,
                "alg": k.alg,
                "status": key_status(k, now),
                "created_at": k.created_at.isoformat(),
                "active_from": k.active_from.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "unpublish_at": k.unpublish_at.isoformat() if k.unpublish_at else None,
            }
            for k in db.session.execute(
                select(SigningKey).order_by(SigningKey.created_at)
            ).scalars()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['kid']}  {row['alg']:6}  {row['status']:11}  created {row['created_at']}")


def _max_token_lifetime() -> int:
    from identity.runtime import runtime

    s = runtime().settings
    return max(s.access_token_lifetime, s.id_token_lifetime) + 60


@keys.command("rotate")
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    help="Rotate only this algorithm's key [default: every algorithm in use].",
)
def rotate_keys(alg: str | None) -> None:
    """Publish a new key; it signs after IDENTITY_KEY_ROTATION_PUBLISH_AHEAD seconds and the
    old key stays published until the tokens it signed have expired."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.oauth import SigningKey
    from identity.oauth import keys as key_service
    from identity.runtime import runtime

    with app_context():
        rt = runtime()
        in_use = {
            k.alg
            for k in db.session.execute(
                select(SigningKey).where(SigningKey.retired_at.is_(None))
            ).scalars()
        }
        for name in [alg] if alg else sorted(in_use or {rt.settings.signing_alg}):
            row = key_service.rotate(
                db.session,
                rt.keys.cipher,
                name,
                rt.settings.key_rotation_publish_ahead,
                _max_token_lifetime(),
            )
            click.echo(f"new {name} key {row.kid}, signs from {row.active_from.isoformat()}")
        db.session.commit()


@keys.command("retire")
@click.argument("kid")
@click.option(
    "--now",
    "immediately",
    is_flag=True,
    help="Also remove it from the JWKS at once (a compromised key).",
)
def retire_key(kid: str, immediately: bool) -> None:
    """Stop signing with a key; it stays published until its tokens expire unless --now."""
    from identity.extensions import db
    from identity.oauth import keys as key_service

    with app_context():
        try:
            row = key_service.retire(db.session, kid, _max_token_lifetime(), immediately)
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        click.echo(
            f"retired {row.kid}; unpublished from "
            f"{row.unpublish_at.isoformat() if row.unpublish_at else '-'}"
        )
