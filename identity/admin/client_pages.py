"""/admin/clients: the registered applications, registering and changing them, their
secrets and the permissions they declare.

The same models and services as /api/v1/clients (identity.api.clients): a form is read
into ClientCreate or ClientUpdate, then registered or changed by the service the API and
`identity clients` call. A new or rotated secret is shown in the answer to the POST, once,
never kept in the session or a flash message.
"""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy import select

from identity.admin.client_forms import (
    AUTH_METHODS,
    GRANT_TYPES,
    SCOPES,
    SIGNING_ALGS,
    ClientForm,
    read_create,
    read_update,
    refused,
)
from identity.admin.console import (
    back,
    check_sensitive,
    is_stale,
    operator,
    page,
    render,
    version_of,
)
from identity.api.clients import (
    ClientOut,
    ClientPermissionDeclare,
    ClientPermissionOut,
    client_out,
    find_client,
    page_of_clients,
    register_client,
)
from identity.api.common import PageQuery
from identity.exceptions import Conflict, Forbidden, IdentityError, InvalidInput, ValidationFailed
from identity.extensions import db
from identity.models.oauth import Client
from identity.models.rbac import Role
from identity.oauth.clients import metadata
from identity.oauth.clients import service as client_service
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission

# Shown beside the values it explains (ClientOut holds these; other stored metadata, such
# as a dynamically registered client's back-channel logout URI, is listed as it is).
SHOWN = set(ClientOut.model_fields) | {"client_name"} | metadata.INTERNAL_METADATA


def _status(error: IdentityError) -> int:
    if isinstance(error, ValidationFailed):
        return 422
    if isinstance(error, Forbidden | Conflict):
        return error.status_code
    return 400


# The list ----------------------------------------------------------------------------------


@page("/clients", Permission.CLIENTS_READ)
def clients() -> ResponseReturnValue:
    try:
        query = PageQuery.model_validate(request.args.to_dict())
    except ValidationError:
        raise InvalidInput("The page address is not valid: follow the links.") from None
    listed = page_of_clients(query)
    return render("clients/list.html", clients=listed.items, next_cursor=listed.next_cursor)


# One client --------------------------------------------------------------------------------


def _detail(row: Client, status: int = 200, **context: Any) -> ResponseReturnValue:
    client = client_out(row)
    declared = [
        ClientPermissionOut.model_validate(p) for p in rbac.client_permissions(db.session(), row.id)
    ]
    other = {k: v for k, v in sorted(row.meta.items()) if k not in SHOWN}
    answer = make_response(
        render(
            "clients/client.html",
            status,
            client=client,
            declared=declared,
            other=other,
            has_secret=client.token_endpoint_auth_method in metadata.SECRET_AUTH_METHODS,
            **context,
        )
    )
    answer.headers["Cache-Control"] = "no-store"
    return answer


@page("/clients/<client_id>", Permission.CLIENTS_READ)
def client(client_id: str) -> ResponseReturnValue:
    return _detail(find_client(client_id))


# Registering and changing ------------------------------------------------------------------


def _form(form: ClientForm, status: int = 200, **context: Any) -> ResponseReturnValue:
    roles: list[str] = []
    if operator().can(Permission.ROLES_ASSIGN):
        roles = list(db.session().execute(select(Role.name).order_by(Role.name)).scalars())
    return render(
        "clients/form.html",
        status,
        form=form,
        grant_types=GRANT_TYPES,
        auth_methods=AUTH_METHODS,
        signing_algs=SIGNING_ALGS,
        scopes=SCOPES,
        roles=roles,
        **context,
    )


@page("/clients/new", Permission.CLIENTS_WRITE, methods=("GET", "POST"))
def clients_new() -> ResponseReturnValue:
    if request.method == "GET":
        return _form(ClientForm.blank())
    form = ClientForm.submitted(request.form)
    body = read_create(form)
    if body is None:
        return _form(form, 422)
    try:
        with db.session().begin_nested():  # undone alone when refused
            # Roles for its service account need roles:assign: register_client checks.
            created = register_client(body, operator().caller)
    except IdentityError as error:
        refused(form, error)
        return _form(form, _status(error))
    flash(f"{created.client.name} is registered.", "success")
    return _detail(created.client, 201, secret=created.client_secret, just_created=True)


@page("/clients/<client_id>/edit", Permission.CLIENTS_WRITE, methods=("GET", "POST"))
def clients_edit(client_id: str) -> ResponseReturnValue:
    if request.method == "GET":
        current = client_out(find_client(client_id))
        return _form(ClientForm.of(current), client=current, version=version_of(current))
    row = find_client(client_id, for_update=True)
    current = client_out(row)
    if is_stale(request.form.get("version"), current):
        form = ClientForm.of(current)
        form.fail(
            "Someone changed this client while you were editing it. These are its values "
            "now: make your change again."
        )
        return _form(form, 409, client=current, version=version_of(current))
    form = ClientForm.submitted(request.form)
    context = {"client": current, "version": version_of(current)}
    body = read_update(form)
    if body is None:
        return _form(form, 422, **context)
    try:
        with db.session().begin_nested():
            changed = client_service.change_registration(
                db.session(),
                row,
                name=body.name,
                redirect_uris=body.redirect_uris,
                post_logout_redirect_uris=body.post_logout_redirect_uris,
                scope=body.scope,
                first_party=body.first_party,
                actor=operator().principal,
            )
    except IdentityError as error:
        refused(form, error)
        return _form(form, _status(error), **context)
    flash(f"{row.name} is changed." if changed else "Nothing changed.", "success")
    return back("admin.client", client_id=row.client_id)


# Secrets and deleting: proofs first --------------------------------------------------------


@page("/clients/<client_id>/secret", Permission.CLIENTS_WRITE, methods=("POST",))
def clients_rotate(client_id: str) -> ResponseReturnValue:
    row = find_client(client_id, for_update=True)
    problem = check_sensitive(request.form.get("reauth"), None, None)
    if problem:
        return _detail(row, 400, rotate_error=problem)
    try:
        with db.session().begin_nested():
            secret = client_service.rotate_secret(
                db.session(), row, actor_id=operator().user.id, actor=operator().principal
            )
    except IdentityError as error:
        return _detail(row, _status(error), rotate_error=error.message)
    flash("The secret is replaced: the old one no longer works.", "success")
    return _detail(row, secret=secret)


@page("/clients/<client_id>/delete", Permission.CLIENTS_WRITE, methods=("POST",))
def clients_delete(client_id: str) -> ResponseReturnValue:
    row = find_client(client_id)
    problem = check_sensitive(request.form.get("reauth"), request.form.get("confirm"), client_id)
    if problem:
        return _detail(row, 400, delete_error=problem)
    name = row.name
    try:
        with db.session().begin_nested():
            client_service.delete_client(
                db.session(), row, actor_id=operator().user.id, actor=operator().principal
            )
    except IdentityError as error:
        return _detail(row, _status(error), delete_error=error.message)
    flash(f"{name} is deleted.", "success")
    return back("admin.clients")


# Declared permissions ----------------------------------------------------------------------


@page("/clients/<client_id>/permissions", Permission.CLIENTS_WRITE, methods=("POST",))
def clients_declare(client_id: str) -> ResponseReturnValue:
    row = find_client(client_id)
    name = request.form.get("name", "").strip()
    entered = {"name": name, "description": request.form.get("description", "")}
    try:
        body = ClientPermissionDeclare.model_validate(
            {"description": entered["description"], "in_token": "in_token" in request.form}
        )
    except ValidationError as error:
        message = "; ".join(e["msg"] for e in error.errors(include_url=False))
        return _detail(row, 422, declare_error=f"Description: {message}", entered=entered)
    try:
        with db.session().begin_nested():
            rbac.declare_permission(
                db.session(),
                row.id,
                name,
                description=body.description,
                in_token=body.in_token,
                actor=operator().principal,
            )
    except IdentityError as error:
        return _detail(row, _status(error), declare_error=error.message, entered=entered)
    flash(f"{row.name} declares {name}.", "success")
    return back("admin.client", client_id=client_id, _anchor="permissions")


@page(
    "/clients/<client_id>/permissions/<name>/remove",
    Permission.CLIENTS_WRITE,
    methods=("POST",),
)
def clients_remove_permission(client_id: str, name: str) -> ResponseReturnValue:
    row = find_client(client_id)
    rbac.remove_permission(db.session(), row.id, name, actor=operator().principal)
    flash(f"{row.name} no longer declares {name}.", "success")
    return back("admin.client", client_id=client_id, _anchor="permissions")
