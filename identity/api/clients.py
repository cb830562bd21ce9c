"""Clients (applications): registration, changes, secrets and the permissions they declare.

The rules live in identity.oauth.clients.service, which the `identity clients` command
uses too: metadata is normalised as there (RFC 7591 names, redirect URIs checked), a
secret is shown once and stored as a hash, and every change reaches every process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from identity.api import bp
from identity.api.auth import Caller, authorize
from identity.api.common import Input, Output, Page, PageQuery, decode_cursor, encode_cursor
from identity.api.operations import operation, require_match
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.oauth import Client
from identity.oauth.clients import service as client_service
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
SigningAlg = Literal["ES256", "RS256", "EdDSA"]


class ClientOut(Output):
    """A registered client: never its secret or the secret's hash."""

    client_id: str
    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    scope: str
    token_endpoint_auth_method: str
    id_token_signed_response_alg: str | None = None
    jwks: dict[str, Any] | None = Field(None, description="The client's public keys.")
    jwks_uri: str | None = None
    request_uris: list[str] = Field(default_factory=list)
    first_party: bool = Field(description="Trusted: users see no consent page.")
    resource_server: bool = Field(description="May introspect any token.")
    registered_via: str = Field(description="cli, api or dynamic (RFC 7591).")
    roles: list[str] = Field(description="Roles of the client's service account (global).")
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientOut):
    client_secret: str | None = Field(
        None,
        description="Shown only in this response (stored as a hash); none for a public or "
        "private_key_jwt client.",
    )


class ClientList(Page[ClientOut]):
    pass


class ClientCreate(Input):
    """RFC 7591 metadata, checked as `identity clients create` checks it."""

    name: str = Field(max_length=200, description="Shown to users on the consent page.")
    redirect_uris: list[str] = Field(default_factory=list, max_length=50)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=50)
    grant_types: list[str] = Field(
        default_factory=lambda: ["authorization_code"],
        max_length=10,
        description="authorization_code, refresh_token, client_credentials, "
        "urn:ietf:params:oauth:grant-type:device_code.",
    )
    response_types: list[str] | None = Field(None, max_length=5)
    scope: str = Field("openid profile email", max_length=1000)
    token_endpoint_auth_method: AuthMethod | None = Field(
        None,
        description="none makes a public client (PKCE). Without it the client gets a secret "
        "and may send it either way (client_secret_basic or client_secret_post).",
    )
    jwks: dict[str, Any] | None = Field(
        None, description="JWK Set of the client's public keys (private_key_jwt)."
    )
    jwks_uri: str | None = Field(None, max_length=2000)
    request_uris: list[str] | None = Field(None, max_length=10)
    id_token_signed_response_alg: SigningAlg | None = None
    first_party: bool = False
    resource_server: bool = False
    roles: list[str] = Field(
        default_factory=list, max_length=50, description="Roles of its service account."
    )


class ClientUpdate(Input):
    """Fields left out keep their value; lists are replaced whole."""

    name: str | None = Field(None, max_length=200)
    redirect_uris: list[str] | None = Field(None, max_length=50)
    post_logout_redirect_uris: list[str] | None = Field(None, max_length=50)
    scope: str | None = Field(None, max_length=1000)
    first_party: bool | None = None


class ClientSecret(Output):
    client_id: str
    client_secret: str = Field(description="Shown only in this response.")


class ClientPermissionOut(Output):
    name: str
    description: str
    in_token: bool = Field(
        description="Sent in the permissions claim of this client's tokens to subjects who hold it."
    )


class ClientPermissionList(Output):
    items: list[ClientPermissionOut]


class ClientPermissionDeclare(Input):
    description: str = Field("", max_length=500)
    in_token: bool = False


def client_out(row: Client) -> ClientOut:
    meta = row.meta
    return ClientOut(
        client_id=row.client_id,
        name=row.name,
        redirect_uris=meta.get("redirect_uris", []),
        post_logout_redirect_uris=meta.get("post_logout_redirect_uris", []),
        grant_types=meta.get("grant_types", []),
        response_types=meta.get("response_types", []),
        scope=meta.get("scope", ""),
        token_endpoint_auth_method=meta.get("token_endpoint_auth_method", "client_secret_basic"),
        id_token_signed_response_alg=meta.get("id_token_signed_response_alg"),
        jwks=meta.get("jwks"),
        jwks_uri=meta.get("jwks_uri"),
        request_uris=meta.get("request_uris", []),
        first_party=row.first_party,
        resource_server=row.resource_server,
        registered_via=row.registered_via,
        roles=sorted(r.name for r in row.roles),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def find_client(client_id: str, *, for_update: bool = False) -> Client:
    statement = select(Client).where(Client.client_id == client_id)
    if for_update:
        statement = statement.with_for_update()
    row = db.session().execute(statement).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return row


def register_client(body: ClientCreate, caller: Caller) -> client_service.CreatedClient:
    """Register a client from the API's input as ``caller`` (POST /clients, and the admin
    console's form, which gives the same input). Roles for its service account also need
    roles:assign, besides the clients:write the operation or page checked; the service
    refuses roles holding more than the caller holds."""
    if body.roles:
        authorize(caller, Permission.ROLES_ASSIGN)
    raw = body.model_dump(
        exclude={"name", "first_party", "resource_server", "roles"}, exclude_none=True
    )
    return client_service.register(
        db.session(),
        raw,
        name=body.name,
        first_party=body.first_party,
        resource_server=body.resource_server,
        roles=body.roles,
        registered_via="api",
        actor=caller.principal,
    )


@operation(
    bp,
    "GET",
    "/clients",
    summary="List clients",
    tag="Clients",
    permission=Permission.CLIENTS_READ,
    query=PageQuery,
    response=ClientList,
)
def list_clients(caller: Caller, query: PageQuery) -> ClientList:
    """Ordered by client_id; pass next_cursor as cursor for the next page."""
    return page_of_clients(query)


def page_of_clients(query: PageQuery) -> ClientList:
    """A page of clients by client_id (the admin console lists them the same way)."""
    statement = select(Client).order_by(Client.client_id)
    after = decode_cursor(query.cursor, 1)
    if after is not None:
        statement = statement.where(Client.client_id > after[0])
    rows = list(db.session().execute(statement.limit(query.limit + 1)).scalars())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return ClientList(
        items=[client_out(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].client_id) if more else None,
    )


@operation(
    bp,
    "POST",
    "/clients",
    summary="Register a client",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    body=ClientCreate,
    response=ClientCreated,
    status=201,
)
def create_client(caller: Caller, body: ClientCreate) -> ClientCreated:
    """The answer holds the client's secret, the only time it is shown (AUTHZ-10). Roles
    for its service account also need roles:assign, and only roles whose permissions the
    caller holds can be given (AUTHZ-05)."""
    created = register_client(body, caller)
    return ClientCreated(
        **client_out(created.client).model_dump(), client_secret=created.client_secret
    )


@operation(
    bp,
    "GET",
    "/clients/<client_id>",
    summary="Read a client",
    tag="Clients",
    permission=Permission.CLIENTS_READ,
    response=ClientOut,
    etag=True,
)
def get_client(caller: Caller, client_id: str) -> ClientOut:
    return client_out(find_client(client_id))


@operation(
    bp,
    "PATCH",
    "/clients/<client_id>",
    summary="Change a client",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    body=ClientUpdate,
    response=ClientOut,
    etag=True,
)
def update_client(caller: Caller, client_id: str, body: ClientUpdate) -> ClientOut:
    """What `identity clients update` changes: the name, redirect URIs, post-logout
    redirect URIs, scopes and the first-party flag, checked as at registration. The id,
    the secret and how the client authenticates stay."""
    session = db.session()
    row = find_client(client_id, for_update=True)
    require_match(client_out(row))
    client_service.change_registration(
        session,
        row,
        name=body.name,
        redirect_uris=body.redirect_uris,
        post_logout_redirect_uris=body.post_logout_redirect_uris,
        scope=body.scope,
        first_party=body.first_party,
        actor=caller.principal,
    )
    session.flush()
    return client_out(row)


@operation(
    bp,
    "DELETE",
    "/clients/<client_id>",
    summary="Delete a client",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    status=204,
)
def delete_client(caller: Caller, client_id: str) -> None:
    """Its codes, refresh tokens and consents go with it; its access tokens stop working."""
    client_service.delete_client(
        db.session(), find_client(client_id), actor_id=caller.user_id, actor=caller.principal
    )


@operation(
    bp,
    "POST",
    "/clients/<client_id>/secret",
    summary="Rotate a client's secret",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    response=ClientSecret,
)
def rotate_secret(caller: Caller, client_id: str) -> ClientSecret:
    """A new secret, shown only in this answer; the old one stops working at once."""
    row = find_client(client_id, for_update=True)
    secret = client_service.rotate_secret(
        db.session(), row, actor_id=caller.user_id, actor=caller.principal
    )
    return ClientSecret(client_id=row.client_id, client_secret=secret)


@operation(
    bp,
    "GET",
    "/clients/<client_id>/permissions",
    summary="List a client's permissions",
    tag="Clients",
    permission=Permission.CLIENTS_READ,
    response=ClientPermissionList,
)
def list_client_permissions(caller: Caller, client_id: str) -> ClientPermissionList:
    """The permissions the application declares (resource:action), which roles can hold."""
    rows = rbac.client_permissions(db.session(), find_client(client_id).id)
    return ClientPermissionList(items=[ClientPermissionOut.model_validate(r) for r in rows])


@operation(
    bp,
    "PUT",
    "/clients/<client_id>/permissions/<name>",
    summary="Declare a client's permission",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    body=ClientPermissionDeclare,
    response=ClientPermissionOut,
)
def declare_client_permission(
    caller: Caller, client_id: str, name: str, body: ClientPermissionDeclare
) -> ClientPermissionOut:
    """Declare (or redeclare) a permission, resource:action in lower case. With in_token,
    the client's tokens carry it in their permissions claim when their subject holds it."""
    row = rbac.declare_permission(
        db.session(),
        find_client(client_id).id,
        name,
        description=body.description,
        in_token=body.in_token,
        actor=caller.principal,
    )
    return ClientPermissionOut.model_validate(row)


@operation(
    bp,
    "DELETE",
    "/clients/<client_id>/permissions/<name>",
    summary="Remove a client's permission",
    tag="Clients",
    permission=Permission.CLIENTS_WRITE,
    status=204,
)
def remove_client_permission(caller: Caller, client_id: str, name: str) -> None:
    rbac.remove_permission(db.session(), find_client(client_id).id, name, actor=caller.principal)
