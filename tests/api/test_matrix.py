"""The authorization matrix of /api/v1: every operation against every kind of caller, with
the answer each must get, in one table (AUTHZ-01, AUTHZ-02).

Callers: anonymous (no credentials: 401); a plain user signed in through the browser (a
session, with its CSRF token: 403); an administrator signed in the same way, who reads
but changes nothing through the API from a browser (403: the console is for that); service
accounts holding the built-in user-manager and auditor roles; and a service account with
a custom role (users:read, groups:read). A caller the table allows gets the operation's
success status; any other gets 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from tests.api.conftest import Api, client_pk, give_roles
from tests.conftest import PASSWORD, csrf_token, sign_in


@pytest.fixture
def app(app_factory: Any) -> Flask:
    # Browser callers here sign in with a password only: the second factor the admin API
    # asks of them by default is tested in tests/admin/test_access.py.
    return app_factory(admin_mfa_required=False)  # type: ignore[no-any-return]


CALLERS = ("anonymous", "plain_user", "admin", "user_manager", "auditor", "service")
ADMIN = {"admin"}
MANAGERS = {"admin", "user_manager"}
READERS = {"admin", "user_manager", "auditor"}
DIRECTORY = {"admin", "user_manager", "auditor", "service"}
AUDITORS = {"admin", "auditor"}
BROWSERS = {"plain_user", "admin"}  # signed-in browsers, not bearer tokens
NEW_CLIENT = {
    "name": "new-app-{n}",
    "redirect_uris": ["https://app.example/callback"],
    "grant_types": ["authorization_code"],
}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    allowed: frozenset[str]
    status: int = 200
    body: Any = None


def row(method: str, path: str, allowed: set[str], status: int = 200, body: Any = None) -> Row:
    return Row(method, path, frozenset(allowed), status, body)


MATRIX = [
    # Users and their sessions
    row("GET", "/users", DIRECTORY),
    row("POST", "/users", MANAGERS, 201, {"email": "new-{n}@example.org", "password": PASSWORD}),
    row("GET", "/users/{user_id}", DIRECTORY),
    row("PATCH", "/users/{user_id}", MANAGERS, 200, {"name": "New Name"}),
    row("POST", "/users/{user_id}/disable", MANAGERS),
    row("POST", "/users/{user_id}/enable", MANAGERS),
    row("DELETE", "/users/{user_id}", MANAGERS, 204),
    row("GET", "/users/{user_id}/sessions", READERS),
    row("DELETE", "/users/{user_id}/sessions/{session_id}", MANAGERS, 204),
    row("DELETE", "/users/{user_id}/sessions", MANAGERS, 204),
    row("GET", "/users/{user_id}/factors", DIRECTORY),
    row("DELETE", "/users/{user_id}/factors", MANAGERS, 204),
    row("GET", "/users/{user_id}/export", MANAGERS),
    row("POST", "/users/{user_id}/erasure", MANAGERS, 200, {"reason": "request 1"}),
    # Clients and the permissions they declare
    row("GET", "/clients", READERS),
    row("POST", "/clients", ADMIN, 201, NEW_CLIENT),
    row("GET", "/clients/{client_id}", READERS),
    row("PATCH", "/clients/{client_id}", ADMIN, 200, {"name": "Renamed"}),
    row("DELETE", "/clients/{client_id}", ADMIN, 204),
    row("POST", "/clients/{client_id}/secret", ADMIN),
    row("GET", "/clients/{client_id}/permissions", READERS),
    row("PUT", "/clients/{client_id}/permissions/docs:write", ADMIN, 200, {"in_token": True}),
    row("DELETE", "/clients/{client_id}/permissions/docs:read", ADMIN, 204),
    # Signing keys and the audit trail
    row("GET", "/keys", AUDITORS),
    row("POST", "/keys/rotate", ADMIN, 201, {"alg": "ES256"}),
    row("POST", "/keys/{kid}/retire", ADMIN, 200, {}),
    row("GET", "/audit-events", AUDITORS),
    # Roles, permissions, assignments
    row("GET", "/roles", READERS),
    row("POST", "/roles", ADMIN, 201, {"name": "new-role-{n}", "permissions": ["users:read"]}),
    row("GET", "/roles/{role}", READERS),
    row("PATCH", "/roles/{role}", ADMIN, 200, {"description": "changed"}),
    row("DELETE", "/roles/{role}", ADMIN, 204),
    row("GET", "/permissions", READERS),
    row("GET", "/assignments", READERS),
    row("POST", "/assignments", MANAGERS, 201, {"role": "{role}", "user_id": "{user_id}"}),
    row("DELETE", "/assignments/{assignment_id}", MANAGERS, 204),
    # Groups
    row("GET", "/groups", DIRECTORY),
    row("POST", "/groups", MANAGERS, 201, {"name": "new-group-{n}"}),
    row("GET", "/groups/{group}", DIRECTORY),
    row("PATCH", "/groups/{group}", MANAGERS, 200, {"description": "changed"}),
    row("DELETE", "/groups/{group}", MANAGERS, 204),
    row("GET", "/groups/{group}/members", DIRECTORY),
    row("PUT", "/groups/{group}/members/{user_id}", MANAGERS, 204),
    row("DELETE", "/groups/{group}/members/{member_id}", MANAGERS, 204),
    # Decisions
    row(
        "POST",
        "/authz/check",
        READERS,
        200,
        {"subject": {"user_id": "{user_id}"}, "permission": "users:read"},
    ),
    row(
        "POST",
        "/authz/check/batch",
        READERS,
        200,
        {"checks": [{"subject": {"user_id": "{user_id}"}, "permission": "users:read"}]},
    ),
    row(
        "POST",
        "/authz/what-if",
        READERS,
        200,
        {
            "subject": {"user_id": "{user_id}"},
            "permission": "users:read",
            "changes": {"add_groups": ["{group}"]},
        },
    ),
]


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


class SessionApi(Api):
    """A signed-in browser calling the API: unsafe methods carry the CSRF token."""

    csrf: str = ""

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        headers["X-CSRF-Token"] = self.csrf
        return super().call(method, path, headers=headers, **kwargs)


def browser(app: Flask, email: str) -> SessionApi:
    http = app.test_client()
    assert sign_in(http, email, PASSWORD).status_code in (200, 302, 303)
    api = SessionApi(http, None)
    api.csrf = csrf_token(http.get("/sign-out").data)  # a page with a form: its token
    return api


@pytest.fixture
def world(app: Flask, make_user: Any, service_account: Any, make_client: Any) -> dict[str, Any]:
    """The users and one caller of each kind (each row then gets objects of its own)."""
    users = {"member": make_user("member@example.org"), "make_client": make_client}
    make_user("root@example.org", roles=("admin",))
    make_user("plain@example.org")
    with app.app_context():
        from identity.extensions import db
        from identity.rbac import service as rbac

        rbac.create_role(db.session, "directory-reader", permissions=["users:read", "groups:read"])
        db.session.commit()
    callers = {
        "anonymous": Api(app.test_client(), None),
        "plain_user": browser(app, "plain@example.org"),
        "admin": browser(app, "root@example.org"),
        "user_manager": service_account("user-manager", name="manager"),
        "auditor": service_account("auditor", name="auditor"),
        "service": service_account("directory-reader", name="directory"),
    }
    return {"users": users, "callers": callers}


def prepare(app: Flask, users: dict[str, uuid.UUID], n: int, entry: Row) -> dict[str, str]:
    """Fresh objects for row n: a target user, a role held by the member, a group with the
    member, a client declaring docs:read; a login session and a spare signing key when
    the row names them."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.oauth import Client, SigningKey
    from identity.oauth.keys import rotate_keys
    from identity.rbac import service as rbac

    target = make_target(app, f"target-{n}@example.org")
    # Before this context writes: on SQLite the client's own transaction would wait.
    client_id = users["make_client"](f"app-{n}").client_id if "{client_id}" in entry.path else None
    names = {"n": str(n), "user_id": str(target), "member_id": str(users["member"])}
    with app.app_context():
        role = rbac.create_role(db.session, f"role-{n}", permissions=["users:read"])
        group = rbac.create_group(db.session, f"group-{n}")
        rbac.add_member(db.session, group, db.session.get(rbac.User, users["member"]))
        assignment = rbac.assign(db.session, role, rbac.Principal("user", users["member"]))
        if client_id is not None:
            client_pk = db.session.execute(
                select(Client.id).where(Client.client_id == client_id)
            ).scalar_one()
            rbac.declare_permission(db.session, client_pk, "docs:read")
        if "{kid}" in entry.path:
            old = (
                db.session.execute(select(SigningKey.kid).where(SigningKey.alg == "ES256"))
                .scalars()
                .first()
            )
            rt = app.extensions["identity"]
            rotate_keys(
                db.session,
                rt.keys.cipher,
                alg="ES256",
                default_alg="ES256",
                publish_ahead=0,
                max_token_lifetime=3600,
            )
            names["kid"] = str(old)
        db.session.commit()
        names.update(
            role=role.name,
            group=group.name,
            assignment_id=str(assignment.id),
            client_id=str(client_id),
        )
    if "{session_id}" in entry.path:
        names["session_id"] = session_of(app, f"target-{n}@example.org")
    return names


def make_target(app: Flask, email: str) -> uuid.UUID:
    from tests.functional.conftest import add_user

    return add_user(app, email)


def session_of(app: Flask, email: str) -> str:
    """Sign the user in through a browser of their own; the session's public id."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.session import LoginSession
    from identity.models.user import User

    assert sign_in(app.test_client(), email, PASSWORD).status_code in (200, 302, 303)
    with app.app_context():
        query = select(LoginSession.sid).join(User, User.id == LoginSession.user_id)
        return str(db.session.execute(query.where(User.email == email)).scalar_one())


@pytest.mark.parametrize("caller", CALLERS)
def test_AUTHZ_02_matrix(app: Flask, world: dict[str, Any], caller: str) -> None:
    """Each row, as this caller: the expected status, and problem details on refusal."""
    api = world["callers"][caller]
    wrong = []
    for n, entry in enumerate(MATRIX):
        names = prepare(app, world["users"], n, entry)
        kwargs: dict[str, Any] = {"headers": {"If-Match": "*"}}
        if entry.body is not None:
            kwargs["json"] = fill(entry.body, names)
        response = api.call(entry.method, fill(entry.path, names), **kwargs)
        if caller == "anonymous":
            expected = 401
        elif caller in BROWSERS and entry.method not in ("GET", "HEAD"):
            expected = 403  # a browser session only reads; it changes through the console
        elif caller in entry.allowed:
            expected = entry.status
        else:
            expected = 403
        problem = response.mimetype == "application/problem+json"
        challenge = response.headers.get("WWW-Authenticate", "").startswith("Bearer")
        if (
            response.status_code != expected
            or (expected >= 400 and not problem)
            or (expected == 401 and not challenge)
        ):
            wrong.append(
                (entry.method, entry.path, expected, response.status_code, response.get_json())
            )
    assert wrong == []


def test_every_operation_is_in_the_matrix(app: Flask) -> None:
    """A new operation must get its row: the table covers the whole API."""
    import re

    from identity.api.operations import OPERATIONS

    def pattern(rule: str) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", rule) + "$")

    missing = [
        f"{op.method} {op.rule}"
        for op in OPERATIONS
        if not any(r.method == op.method and pattern(op.rule).match(r.path) for r in MATRIX)
    ]
    assert missing == []


def test_a_service_account_without_identity_permissions_gets_no_admin_token(
    app: Flask, make_client: Any, builtin_roles: None
) -> None:
    """AUTHZ-01: invalid_scope, not a token that the API would then refuse."""
    from tests.api.conftest import service_token

    client = make_client("app", grant_types=["client_credentials"], redirect_uris=[], scope="roles")
    give_roles(app, "client", client_pk(app, client.client_id))  # no roles at all
    response = service_token(app, client)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"
