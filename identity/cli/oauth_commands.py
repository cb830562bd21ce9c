"""identity clients ... and identity keys ...

Each command imports what it uses inside its function: deferred for start-up time, so
that `identity --help` loads no web or database stack (see identity.cli).
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING

import click

from identity.cli import DashedArguments, cli
from identity.exceptions import IdentityError, InvalidInput, NotFound

if TYPE_CHECKING:
    from identity.settings import Settings

# identity.oauth.keys.ALGORITHMS, written out: importing that module loads joserfc, which
# `identity --help` must not (a test keeps the two equal).
ALGORITHMS = ("ES256", "RS256", "EdDSA")


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
    "--require-mfa",
    is_flag=True,
    help="Users signing in to this client must use a second factor (default_acr_values "
    "urn:identity:loa:2fa); one without it sets one up first.",
)
@click.option(
    "--backchannel-logout-uri",
    metavar="URI",
    default=None,
    help="Where logout tokens are POSTed when a user's session ends (OpenID Connect "
    "Back-Channel Logout).",
)
@click.option(
    "--security-event-uri",
    metavar="URI",
    default=None,
    help="Where Security Event Tokens are POSTed (RFC 8935), such as the RISC account-purged "
    "event when a user who used the client is erased.",
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
    default=None,
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
    help="Token endpoint authentication; none makes a public client (PKCE). Without it the "
    "client gets a secret and may send it either way (client_secret_basic or "
    "client_secret_post).",
)
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File(),
    help="JWK Set file with the client's public keys (private_key_jwt, request objects).",
)
@click.option(
    "--jwks-uri", help="https URL of the client's JWK Set (private_key_jwt, request objects)."
)
@click.option(
    "--request-uri",
    "request_uris",
    multiple=True,
    metavar="URL",
    help="https URL the server may fetch the client's request objects from (repeatable).",
)
@click.option(
    "--id-token-alg",
    type=click.Choice(ALGORITHMS),
    help="ID token signing algorithm [default: RS256, the OpenID Connect default that every "
    "relying party accepts].",
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
    *,  # click passes every option by name
    name: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    security_event_uri: str | None,
    require_mfa: bool,
    grant_types: tuple[str, ...],
    scope: str,
    auth_method: str | None,
    jwks_file: IO[str] | None,
    jwks_uri: str | None,
    request_uris: tuple[str, ...],
    id_token_alg: str | None,
    first_party: bool,
    resource_server: bool,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client. A generated secret is shown once and stored only as a hash."""
    # Deferred for start-up time, as every import of the commands below.
    from identity.cli.context import command
    from identity.oauth.clients import service as client_service

    raw: dict[str, object] = {
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(logout_uris),
        "grant_types": list(grant_types) or ["authorization_code"],
        "scope": scope,
    }
    optional = {
        "token_endpoint_auth_method": auth_method,
        "backchannel_logout_uri": backchannel_logout_uri,
        "security_event_uri": security_event_uri,
        "jwks_uri": jwks_uri,
        "id_token_signed_response_alg": id_token_alg,
    }
    raw.update({key: value for key, value in optional.items() if value})
    if require_mfa:
        raw["default_acr_values"] = ["urn:identity:loa:2fa"]
    if jwks_file is not None:
        raw["jwks"] = json.load(jwks_file)
    if request_uris:
        raw["request_uris"] = list(request_uris)
    with command() as ctx:
        try:
            created = client_service.register(
                ctx.session,
                raw,
                name=name,
                first_party=first_party,
                resource_server=resource_server,
                roles=roles,
            )
        except InvalidInput as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
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

    from identity.cli.context import command
    from identity.models.oauth import Client
    from identity.oauth.clients.service import describe

    with command() as ctx:
        rows = [
            describe(r)
            for r in ctx.session.execute(select(Client).order_by(Client.created_at)).scalars()
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


@clients.command("show", cls=DashedArguments)
@click.argument("client_id")
def show_client(client_id: str) -> None:
    """Show a client's registration as JSON (never its secret)."""
    from identity.cli.context import command
    from identity.oauth.clients import service as client_service

    with command() as ctx:
        try:
            row = client_service.describe(client_service.find(ctx.session, client_id))
        except NotFound as error:
            raise click.ClickException(error.message) from None
    click.echo(json.dumps(row, indent=2))


@clients.command("update", cls=DashedArguments)
@click.argument("client_id")
@click.option("--name", help="New name shown to users on the consent page.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="Exact redirect URI (repeatable); replaces every registered one.",
)
@click.option(
    "--add-redirect-uri",
    "added_redirect_uris",
    multiple=True,
    metavar="URI",
    help="Register one more redirect URI (repeatable).",
)
@click.option(
    "--remove-redirect-uri",
    "removed_redirect_uris",
    multiple=True,
    metavar="URI",
    help="Unregister this redirect URI (repeatable).",
)
@click.option(
    "--post-logout-redirect-uri",
    "logout_uris",
    multiple=True,
    metavar="URI",
    help="Allowed after RP-initiated logout (repeatable); replaces every registered one.",
)
@click.option(
    "--no-post-logout-redirect-uris",
    "clear_logout_uris",
    is_flag=True,
    help="Remove every post-logout redirect URI.",
)
@click.option("--scope", help='Scopes the client may request, e.g. "openid profile email".')
@click.option(
    "--first-party/--third-party",
    "first_party",
    default=None,
    help="Trusted first-party app (no consent page), or not.",
)
def update_client(
    *,  # click passes every option by name
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    added_redirect_uris: tuple[str, ...],
    removed_redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    clear_logout_uris: bool,
    scope: str | None,
    first_party: bool | None,
) -> None:
    """Change a client's name, redirect URIs, post-logout redirect URIs, scopes or
    first-party flag, keeping its id and secret. Options not given keep their values; every
    running server sees the change within a second."""
    from identity.cli.context import command
    from identity.oauth.clients import service as client_service

    if logout_uris and clear_logout_uris:
        raise click.UsageError(
            "give --post-logout-redirect-uri or --no-post-logout-redirect-uris, not both"
        )
    with command() as ctx:
        try:
            changed = client_service.change_registration(
                ctx.session,
                client_service.find(ctx.session, client_id),
                name=name,
                redirect_uris=list(redirect_uris) or None,
                add_redirect_uris=added_redirect_uris,
                remove_redirect_uris=removed_redirect_uris,
                post_logout_redirect_uris=(
                    list(logout_uris) if logout_uris or clear_logout_uris else None
                ),
                scope=scope,
                first_party=first_party,
            )
        except (InvalidInput, NotFound) as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
    click.echo(f"updated {client_id}: {', '.join(changed)}" if changed else "nothing changed")


@clients.command("delete", cls=DashedArguments)
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_client(client_id: str, yes: bool) -> None:
    """Delete a client with its codes, refresh tokens and consents."""
    from identity.cli.context import command
    from identity.oauth.clients import service as client_service

    if not yes:
        click.confirm(f"Delete client {client_id} and every grant it holds?", abort=True)
    with command() as ctx:
        try:
            client_service.delete_client(ctx.session, client_service.find(ctx.session, client_id))
        except NotFound as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret", cls=DashedArguments)
@click.argument("client_id")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"client_id": ..., "client_secret": ...}.'
)
def rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace a client's secret; the old one stops working (within 10 s on every instance)."""
    from identity.cli.context import command
    from identity.oauth.clients import service as client_service

    with command() as ctx:
        try:
            secret = client_service.rotate_secret(
                ctx.session, client_service.find(ctx.session, client_id)
            )
        except (InvalidInput, NotFound) as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
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
    from identity.cli.context import command
    from identity.models.base import utcnow
    from identity.oauth import keys as key_service

    now = utcnow()
    with command() as ctx:
        rows = [key_service.summary(k, now) for k in key_service.list_keys(ctx.session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['kid']}  {row['alg']:6}  {row['status']:11}  created {row['created_at']}")


def _max_token_lifetime(settings: Settings) -> int:
    from identity.oauth.keys import longest_token_lifetime

    return longest_token_lifetime(settings.access_token_lifetime, settings.id_token_lifetime)


@keys.command("rotate")
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    help="Rotate only this algorithm's key [default: every algorithm in use].",
)
def rotate_keys(alg: str | None) -> None:
    """Publish a new key; it signs after IDENTITY_KEY_ROTATION_PUBLISH_AHEAD seconds and the
    old key stays published until the tokens it signed have expired."""
    from identity.cli.context import command
    from identity.oauth import keys as key_service

    with command() as ctx:
        rt = ctx.runtime
        created = key_service.rotate_keys(
            ctx.session,
            rt.keys.cipher,
            alg=alg,
            default_alg=rt.settings.signing_alg,
            publish_ahead=rt.settings.key_rotation_publish_ahead,
            max_token_lifetime=_max_token_lifetime(rt.settings),
        )
        ctx.session.commit()
    for row in created:
        click.echo(f"new {row.alg} key {row.kid}, signs from {row.active_from.isoformat()}")


@keys.command("retire", cls=DashedArguments)
@click.argument("kid")
@click.option(
    "--now",
    "immediately",
    is_flag=True,
    help="Also remove it from the JWKS at once (a compromised key).",
)
def retire_key(kid: str, immediately: bool) -> None:
    """Stop signing with a key; it stays published until its tokens expire unless --now."""
    from identity.cli.context import command
    from identity.oauth import keys as key_service

    with command() as ctx:
        try:
            row = key_service.retire(
                ctx.session, kid, _max_token_lifetime(ctx.settings), immediately
            )
        except IdentityError as error:
            raise click.ClickException(error.message) from None
        ctx.session.commit()
        click.echo(
            f"retired {row.kid}; unpublished from "
            f"{row.unpublish_at.isoformat() if row.unpublish_at else '-'}"
        )
