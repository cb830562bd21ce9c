"""Helpers for the functional tests: reading the store, comparing responses, counting hashes."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import PASSWORD, Mailbox, csrf_token

ISSUER = "http://127.0.0.1:8000"


def add_user(
    app: Flask,
    email: str = "alice@example.org",
    password: str = PASSWORD,
    *,
    verified: bool = True,
    roles: tuple[str, ...] = (),
    name: str | None = None,
) -> uuid.UUID:
    """Create a user in any app (the ``make_user`` fixture is bound to the default app)."""
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.models.user import Role
    from identity.rbac.service import ensure_builtin_roles
    from identity.runtime import runtime

    with app.app_context():
        # The built-in roles (admin, user-manager, auditor) with their permissions.
        ensure_builtin_roles(db.session)
        for role in roles:
            query = select(Role).where(Role.name == role)
            if db.session.execute(query).scalar_one_or_none() is None:
                db.session.add(Role(name=role))
        user = Accounts(db.session, runtime()).create_user(
            email, password, roles=list(roles), verified=verified, name=name
        )
        db.session.commit()
        return user.id


def add_role(app: Flask, name: str) -> None:
    from identity.extensions import db
    from identity.models.user import Role

    with app.app_context():
        db.session.add(Role(name=name))
        db.session.commit()


def get_user(app: Flask, email: str) -> Any:
    """The user row for an email (detached, attributes loaded), or None."""
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is not None:
            _ = user.roles
            db.session.expunge(user)
        return user


def count(app: Flask, model: Any, **filters: Any) -> int:
    from identity.extensions import db

    with app.app_context():
        return len(db.session.execute(select(model).filter_by(**filters)).scalars().all())


def update_user(app: Flask, email: str, **values: Any) -> None:
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one()
        for key, value in values.items():
            setattr(user, key, value)
        db.session.commit()


def audit_events(app: Flask, event: str | None = None) -> list[dict[str, Any]]:
    """The audit trail as plain dicts, oldest first, optionally one event type."""
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if event is not None:
            query = query.where(AuditEvent.event == event)
        rows = db.session.execute(query).scalars().all()
        return [
            {
                "seq": row.seq,
                "event": row.event,
                "outcome": row.outcome,
                "actor_id": row.actor_id,
                "subject_id": row.subject_id,
                "ip": row.ip,
                "user_agent": row.user_agent,
                "request_id": row.request_id,
                "occurred_at": row.occurred_at,
                "data": dict(row.data),
                # The personal details kept outside the chain (emails, names), if any.
                "personal": dict((row.personal or {}).get("data", {})),
            }
            for row in rows
        ]


def session_cookie_name(app: Flask) -> str:
    https = app.extensions["identity"].settings.issuer_is_https
    return "__Host-identity_session" if https else "identity_session"


def device_cookie_name(app: Flask) -> str:
    https = app.extensions["identity"].settings.issuer_is_https
    return "__Host-identity_device" if https else "identity_device"


def cookie_value(client: FlaskClient, name: str) -> str | None:
    cookie = client.get_cookie(name)
    return cookie.value if cookie is not None else None


def set_cookie_names(response: Any) -> list[str]:
    return sorted(header.split("=", 1)[0] for header in response.headers.getlist("Set-Cookie"))


def comparable(html: bytes | str, *variable: str) -> str:
    """Page text with the CSRF token and the given per-request strings blanked out."""
    text = html.decode() if isinstance(html, bytes) else html
    text = re.sub(r'(name="csrf_token" type="hidden" value=")[^"]+', r"\1TOKEN", text)
    for value in variable:
        text = text.replace(value, "VALUE")
    return text


def post_with_token(client: FlaskClient, path: str, data: dict[str, str], **kwargs: Any) -> Any:
    """POST a form with a CSRF token taken from another page of this browser (sign-in)."""
    token = csrf_token(client.get("/sign-in").data)
    return client.post(path, data={"csrf_token": token, **data}, **kwargs)


class ArgonCalls:
    """Counts the argon2 hash and verify calls an app makes (argon2-cffi's own methods)."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes = 0
        self.verifies = 0
        hasher = app.extensions["identity"].hasher
        self._argon = hasher._hasher
        monkeypatch.setattr(hasher, "_hasher", self)

    def hash(self, *args: Any, **kwargs: Any) -> Any:
        self.hashes += 1
        return self._argon.hash(*args, **kwargs)

    def verify(self, *args: Any, **kwargs: Any) -> Any:
        self.verifies += 1
        return self._argon.verify(*args, **kwargs)

    def check_needs_rehash(self, *args: Any, **kwargs: Any) -> Any:
        return self._argon.check_needs_rehash(*args, **kwargs)

    def reset(self) -> None:
        self.hashes = self.verifies = 0


@pytest.fixture
def argon_calls(app: Flask, monkeypatch: pytest.MonkeyPatch) -> ArgonCalls:
    return ArgonCalls(app, monkeypatch)


@pytest.fixture
def invite_app(app_factory: Any) -> Flask:
    return app_factory(registration="invite")  # type: ignore[no-any-return]


@pytest.fixture
def invite_mailbox(invite_app: Flask) -> Mailbox:
    return Mailbox(invite_app)
