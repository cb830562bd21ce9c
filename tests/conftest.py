"""Shared fixtures.

The suite runs against SQLite by default and against PostgreSQL when
``IDENTITY_TEST_DATABASE_URL`` names a server (``postgresql://postgres@127.0.0.1:5432/test``):
each pytest worker then creates, migrates and finally drops a database of its own. The schema
is migrated once per session; each test starts from empty tables.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from identity import create_app
from identity.models.base import Base
from identity.settings import Settings

PASSWORD = "correct horse battery staple"
TEST_DATABASE_URL = os.environ.get("IDENTITY_TEST_DATABASE_URL", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgresql`` run in the PostgreSQL pass only: on SQLite what they are
    about does not exist (the workers read the database for every check), so they would
    only repeat the PostgreSQL pass's work. Then the long modules go first."""
    if not TEST_DATABASE_URL.startswith("postgresql"):
        kept = [item for item in items if item.get_closest_marker("postgresql") is None]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept
    _long_modules_first(items)


# Modules that start servers, browsers or many commands take tens of seconds each. xdist
# (--dist loadscope) hands out whole modules in collection order, so they go first: started
# last, a few of them kept one or two workers busy long after the others had finished.
LONG_MODULES = ("tests/integration/", "tests/unit/test_doc_commands.py", "tests/backup/")


def _long_modules_first(items: list[pytest.Item]) -> None:
    def long(item: pytest.Item) -> bool:
        path = item.nodeid.split("::", 1)[0]
        return path.startswith(LONG_MODULES) or item.get_closest_marker("slow") is not None

    modules = {item.nodeid.split("::", 1)[0] for item in items if long(item)}
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in modules)  # stable


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database for this test session (and xdist worker)."""
    from identity import migrate

    if TEST_DATABASE_URL.startswith("postgresql"):
        url = create_database(f"identity_test_{_worker()}_{uuid.uuid4().hex[:8]}")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'identity.db'}"
    app = make_app(tmp_path_factory.mktemp("migrate"), url)
    with app.app_context():
        from identity.extensions import db

        migrate.upgrade(db.engine)
        db.engine.dispose()
    yield url
    if url.startswith("postgresql"):
        drop_database(url)


def create_database(name: str) -> str:
    """Create a database on the test server and return its URL."""
    admin_url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg")
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    target = make_url(url)
    admin_url = target.set(database=make_url(TEST_DATABASE_URL).database)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    engine.dispose()


def test_settings(instance: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "instance_path": instance,
        "database_url": database_url,
        "secret_key": "test-secret-key-" + "x" * 32,
        "ratelimit_enabled": False,
        "mail_backend": "file",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def make_app(instance: Path, database_url: str, **overrides: Any) -> Flask:
    app = create_app(test_settings(instance, database_url, **overrides))
    app.config["TESTING"] = True
    return app


def empty_tables(app: Flask) -> None:
    from identity.extensions import db

    with app.app_context():
        db.session.remove()
        with db.engine.begin() as connection:
            tables = list(reversed(Base.metadata.sorted_tables))
            if connection.dialect.name == "postgresql":
                names = ", ".join(f'"{t.name}"' for t in tables)
                connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(table.delete())
        db.engine.dispose()


@pytest.fixture
def app_factory(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """Build apps with extra settings; tables are emptied after the test."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = make_app(tmp_path / f"instance{len(apps)}", database_url, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["identity"].mailer.flush()
    if apps:
        empty_tables(apps[0])


@pytest.fixture
def app(app_factory: Any) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Mailbox:
    """Captures outgoing mail of one app instead of writing it to the outbox."""

    def __init__(self, app: Flask) -> None:
        self.mailer = app.extensions["identity"].mailer
        self._sent: list[EmailMessage] = []
        self.mailer.deliver = self._sent.append

    @property
    def messages(self) -> list[EmailMessage]:
        self.mailer.flush()
        return list(self._sent)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def last_link(self, address: str) -> str:
        """The path of the last link mailed to an address (issuer stripped)."""
        messages = self.to(address)
        assert messages, f"no mail to {address}"
        body = messages[-1].get_content()
        match = re.search(r"https?://[^/\s]+(/\S+)", body)
        assert match, body
        return match.group(1)


@pytest.fixture
def mailbox(app: Flask) -> Mailbox:
    return Mailbox(app)


def csrf_token(html: str | bytes) -> str:
    if isinstance(html, bytes):
        html = html.decode()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def form_post(client: FlaskClient, path: str, data: dict[str, str], **kwargs: Any) -> Any:
    """GET the page for its CSRF token, then POST the form, as a browser does."""
    page = client.get(path)
    return client.post(path, data={"csrf_token": csrf_token(page.data), **data}, **kwargs)


@pytest.fixture
def make_user(app: Flask) -> Any:
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.runtime import runtime

    def factory(
        email: str = "alice@example.org",
        password: str = PASSWORD,
        *,
        verified: bool = True,
        roles: tuple[str, ...] = (),
        name: str | None = None,
    ) -> Any:
        from identity.models.user import Role
        from identity.rbac.service import ensure_builtin_roles

        with app.app_context():
            # The built-in roles (admin, user-manager, auditor) with their permissions.
            ensure_builtin_roles(db.session)
            for role in roles:
                if db.session.query(Role).filter_by(name=role).first() is None:
                    db.session.add(Role(name=role))
            user = Accounts(db.session, runtime()).create_user(
                email, password, roles=list(roles), verified=verified, name=name
            )
            db.session.commit()
            user_id = user.id
        return user_id

    return factory


def sign_in(client: FlaskClient, email: str = "alice@example.org", password: str = PASSWORD) -> Any:
    return form_post(client, "/sign-in", {"email": email, "password": password})


@pytest.fixture
def user(make_user: Any) -> uuid.UUID:
    return make_user()  # type: ignore[no-any-return]


@pytest.fixture
def signed_in(client: FlaskClient, user: uuid.UUID) -> FlaskClient:
    response = sign_in(client)
    assert response.status_code == 303, response.data
    return client
