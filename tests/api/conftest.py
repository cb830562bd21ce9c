"""Admin API fixtures: callers with roles, holding identity:admin tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.oauth.conftest import RegisteredClient, keys, make_client  # noqa: F401 - fixtures

ADMIN_SCOPE = "identity:admin"


@dataclass
class Api:
    """A test client that sends a bearer token on every call."""

    http: FlaskClient
    token: str | None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.http.open("/api/v1" + path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.call("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.call("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.call("DELETE", path, **kwargs)


def give_roles(app: Flask, kind: str, principal: uuid.UUID, *roles: str) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        rbac.ensure_builtin_roles(db.session)
        rbac.give_roles(db.session, rbac.Principal(kind, principal), roles)  # type: ignore[arg-type]
        db.session.commit()
    # Committed outside a request: no unit of work tells this process's snapshot cache,
    # which would otherwise refuse the new holder's token for up to a second.
    app.extensions["identity"].rbac.invalidate()


def client_pk(app: Flask, client_id: str) -> uuid.UUID:
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.oauth import Client

    with app.app_context():
        return db.session.execute(
            select(Client.id).where(Client.client_id == client_id)
        ).scalar_one()


def service_token(app: Flask, client: RegisteredClient, scope: str = ADMIN_SCOPE) -> Any:
    """A client credentials token request; the response."""
    return app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=client.basic_auth(),
    )


@pytest.fixture
def builtin_roles(app: Flask) -> None:
    from identity.extensions import db
    from identity.rbac.service import ensure_builtin_roles

    with app.app_context():
        ensure_builtin_roles(db.session)
        db.session.commit()


@pytest.fixture
def service_account(
    app: Flask,
    make_client: Any,  # noqa: F811 - the fixture imported above
    builtin_roles: None,
) -> Callable[..., Api]:
    """An API caller: a client's service account with these roles, and its token."""

    def factory(*roles: str, name: str = "ops") -> Api:
        client = make_client(
            name, grant_types=["client_credentials"], redirect_uris=[], scope="roles"
        )
        if roles:
            give_roles(app, "client", client_pk(app, client.client_id), *roles)
        response = service_token(app, client)
        assert response.status_code == 200, response.json
        return Api(app.test_client(), response.json["access_token"])

    return factory


@pytest.fixture
def admin_api(service_account: Callable[..., Api]) -> Api:
    return service_account("admin")
