"""The admin console under the Flask test client: operators of each built-in role, and
posting the console's forms as a browser does (CSRF token from the page)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, csrf_token, sign_in

ADMIN = "root@example.org"


@pytest.fixture
def app(app_factory: Any) -> Flask:
    # Console users need a second factor by default; tests/admin/test_access.py covers that
    # policy, the other tests sign in with a password only.
    return app_factory(admin_mfa_required=False)  # type: ignore[no-any-return]


@pytest.fixture
def operator(app: Flask, make_user: Any) -> Callable[..., FlaskClient]:
    """A signed-in browser of a new user holding ``roles`` (none: an ordinary user)."""

    def factory(*roles: str, email: str | None = None) -> FlaskClient:
        address = email or f"{'-'.join(roles) or 'user'}-{uuid.uuid4().hex[:6]}@example.org"
        make_user(address, roles=roles, name=f"{' '.join(roles) or 'plain'} operator")
        # make_user committed outside a request: this process's policy cache learns it now.
        app.extensions["identity"].rbac.invalidate()
        client = app.test_client()
        answer = sign_in(client, address)
        assert answer.status_code == 303, answer.data
        client.email = address  # type: ignore[attr-defined]
        return client

    return factory


@pytest.fixture
def admin(operator: Callable[..., FlaskClient]) -> FlaskClient:
    return operator("admin", email=ADMIN)


def submit(
    client: FlaskClient, page: str, action: str | None = None, **data: str | list[str]
) -> Any:
    """GET ``page`` for its CSRF token, then POST ``data`` to ``action`` (or the page)."""
    shown = client.get(page)
    assert shown.status_code == 200, shown.text
    return client.post(action or page, data={"csrf_token": csrf_token(shown.data), **data})


REAUTH = {"reauth": PASSWORD}
