"""The client form of the console: what each field means, and reading a submitted form into
the admin API's own input models (ClientCreate, ClientUpdate), so that the console accepts
exactly what POST and PATCH /api/v1/clients accept.

A list is one value a line (redirect URIs) or a group of checkboxes (grant types, roles);
an empty optional field is left out, as an API caller would leave it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from identity.api.clients import ClientCreate, ClientOut, ClientUpdate
from identity.exceptions import IdentityError
from identity.oauth.clients import metadata
from identity.oauth.keys import ALGORITHMS
from identity.oauth.scopes import SCOPE_DESCRIPTIONS

GRANT_TYPES: tuple[tuple[str, str, str], ...] = (
    (
        metadata.AUTHORIZATION_CODE,
        "Authorization code",
        "People sign in in the browser; the app exchanges the code it gets back (with PKCE).",
    ),
    (
        metadata.REFRESH_TOKEN,
        "Refresh token",
        "The app renews its access without asking the person again.",
    ),
    (
        metadata.CLIENT_CREDENTIALS,
        "Client credentials",
        "The app acts as itself (its service account), no person involved. Not for public clients.",
    ),
    (
        metadata.DEVICE_CODE,
        "Device code",
        "TVs and command-line tools show a code that the person enters on another device.",
    ),
)

# (value, label): "" leaves the method out, as an API caller may.
AUTH_METHODS: tuple[tuple[str, str], ...] = (
    ("", "A secret, sent either way (the usual choice for a server-side app)"),
    ("client_secret_basic", "A secret, in the HTTP Basic Authorization header only"),
    ("client_secret_post", "A secret, in the form body only"),
    ("private_key_jwt", "A JWT signed with the app's private key (no secret)"),
    ("none", "None: a public client (single-page or native app, PKCE)"),
)

SIGNING_ALGS: tuple[str, ...] = ALGORITHMS
SCOPES = SCOPE_DESCRIPTIONS

LINE_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "request_uris")
CHECKBOXES = ("first_party", "resource_server")
# The fields a change may carry (ClientUpdate); the others are fixed at registration.
EDITABLE = tuple(ClientUpdate.model_fields)


@dataclass
class ClientForm:
    """What the form shows: the values (as typed, or the client's), errors per field."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None

    @classmethod
    def blank(cls) -> ClientForm:
        return cls(values={"scope": "openid profile email", "grant_types": ["authorization_code"]})

    @classmethod
    def of(cls, client: ClientOut) -> ClientForm:
        values = client.model_dump()
        for name in LINE_FIELDS:
            values[name] = "\n".join(values.get(name) or [])
        return cls(values=values)

    @classmethod
    def submitted(cls, form: MultiDict[str, str]) -> ClientForm:
        values: dict[str, Any] = {k: form.get(k, "") for k in form if k not in ("csrf_token",)}
        values["grant_types"] = form.getlist("grant_types")
        values["roles"] = form.getlist("roles")
        for name in CHECKBOXES:
            values[name] = name in form
        return cls(values=values)

    def fail(self, message: str, name: str | None = None) -> None:
        if name is None:
            self.message = message
        else:
            self.errors[name] = message


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _data(form: ClientForm, names: tuple[str, ...]) -> dict[str, Any]:
    """The JSON an API caller would send: empty optional values left out."""
    data: dict[str, Any] = {}
    for name in names:
        value = form.values.get(name)
        if name in LINE_FIELDS:
            lines = _lines(value or "")
            if lines or name != "request_uris":
                data[name] = lines
        elif name == "jwks":
            if (value or "").strip():
                try:
                    data[name] = json.loads(str(value))
                except ValueError:
                    form.fail('Not valid JSON: paste the JWK Set ({"keys": [...]}).', name)
        elif name in CHECKBOXES:
            data[name] = bool(value)
        elif name in ("grant_types", "roles"):
            data[name] = list(value or [])
        elif isinstance(value, str) and value.strip():
            data[name] = value
        elif name in ("name", "scope"):
            data[name] = value or ""
    return data


def _validate(form: ClientForm, model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        body = model.model_validate(data)
    except ValidationError as error:
        for e in error.errors(include_url=False, include_input=False):
            name = str(e["loc"][0]) if e["loc"] else None
            form.fail(e["msg"], name if name in model.model_fields else None)
        return None
    return None if form.errors else body


def read_create(form: ClientForm) -> ClientCreate | None:
    """The registration the form asks for, or None with the form's errors filled in."""
    result: ClientCreate | None = _validate(
        form, ClientCreate, _data(form, tuple(ClientCreate.model_fields))
    )
    return result


def read_update(form: ClientForm) -> ClientUpdate | None:
    """The change the form asks for (every editable field, lists replaced whole)."""
    result: ClientUpdate | None = _validate(form, ClientUpdate, _data(form, EDITABLE))
    return result


# What each service message is about, to show it beside its field.
_MENTIONS = (
    ("post_logout_redirect_uris", "post_logout_redirect_uris"),
    ("grant", "grant_types"),
    ("client_credentials", "grant_types"),
    ("response_types", "grant_types"),
    ("scope", "scope"),
    ("jwks_uri", "jwks_uri"),
    ("private_key_jwt", "jwks"),
    ("jwks", "jwks"),
    ("request_uris", "request_uris"),
    ("id_token_signed_response_alg", "id_token_signed_response_alg"),
    ("token_endpoint_auth_method", "token_endpoint_auth_method"),
    ("client_name", "name"),
    ("role", "roles"),
)


def refused(form: ClientForm, error: IdentityError) -> None:
    """Put a service's refusal beside the field it is about (the form's top otherwise)."""
    text = error.message
    if isinstance(error, metadata.InvalidRedirectUri):
        posted = _lines(form.values.get("post_logout_redirect_uris") or "")
        own = _lines(form.values.get("redirect_uris") or "")
        about = [u for u in posted if u in text and u not in own]
        form.fail(text, "post_logout_redirect_uris" if about else "redirect_uris")
        return
    if isinstance(error, metadata.InvalidClientMetadata):
        for mention, name in _MENTIONS:
            if mention in text:
                form.fail(text, name)
                return
    form.fail(text)
