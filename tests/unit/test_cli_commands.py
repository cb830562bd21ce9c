"""The everyday commands in-process, against the test database: deleting a user and setting
a password end their sessions and tokens; `clients update` changes only what it is asked,
through the client service, which publishes and audits the change."""

# ruff: noqa: F811 - the fixtures of tests/oauth/conftest.py, imported, are test arguments
from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import PASSWORD
from tests.oauth.conftest import (  # noqa: F401 - fixtures
    Flow,
    keys,
    make_client,
    rp,
    token_request,
)


@pytest.fixture
def flow(client: Any, user: Any) -> Flow:
    return Flow(client)


@pytest.fixture
def cli(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `identity ...` in-process against the test app's database and secret key."""
    from identity.cli import cli as command
    from identity.cli import oauth_commands, users  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())

    def run(*args: str, ok: bool = True, input: str | None = None) -> Any:
        result = CliRunner().invoke(command, list(args), input=input)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def signed_in_tokens(flow: Flow, client: Any, rp: Any) -> dict[str, str]:
    params, verifier = flow.authorize(rp)
    tokens: dict[str, str] = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json
    assert client.get("/account").status_code == 200
    assert client.get("/userinfo", headers=bearer(tokens)).status_code == 200
    return tokens


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_everything_ended(client: Any, rp: Any, tokens: dict[str, str]) -> None:
    """Cookie, access token and refresh token are all refused."""
    assert client.get("/account").status_code == 302  # back to sign-in
    assert client.get("/userinfo", headers=bearer(tokens)).status_code == 401
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    introspection = client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=rp.basic_auth()
    )
    assert introspection.json == {"active": False}


def audit_events(app: Any) -> list[Any]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        return list(db.session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def test_deleting_a_user_ends_their_session_and_tokens(app, flow, rp, client, cli):
    """`identity users delete` ends the browser session and every token at once, removes
    the account and its consents, and is audited; nothing is logged on the terminal."""
    from identity.extensions import db
    from identity.models.oauth import Consent
    from identity.models.user import User

    tokens = signed_in_tokens(flow, client, rp)
    with app.app_context():
        user_id = db.session.execute(select(User.id)).scalar_one()

    declined = cli("users", "delete", "alice@example.org", input="n\n", ok=False)
    assert declined.exit_code == 1 and "Aborted!" in declined.output
    result = cli("users", "delete", "Alice@Example.org", input="y\n")
    assert re.search(r"deleted alice@example.org: receipt [0-9a-f]{32}\n$", result.stdout)
    assert result.stderr == ""

    assert_everything_ended(client, rp, tokens)
    with app.app_context():
        assert db.session.execute(select(User)).first() is None
        assert db.session.execute(select(Consent)).first() is None
    # (The token requests that proved the tokens dead are audited too, as refused.)
    (deleted,) = [e for e in audit_events(app) if e.event == "gdpr.erased"]
    assert deleted.subject_id is None and user_id is not None  # erased: no id left
    assert cli("users", "delete", "alice@example.org", "--yes", ok=False).exit_code == 1


def test_setting_a_password_ends_sessions_and_tokens(app, flow, rp, client, cli):
    """`identity users set-password` replaces the password (policy applied) and ends the
    sessions and grants, as a reset does."""
    tokens = signed_in_tokens(flow, client, rp)
    refused = cli(
        "users", "set-password", "alice@example.org", "--password-stdin", input="short\n", ok=False
    )
    assert refused.exit_code == 1 and "Error: " in refused.output
    assert client.get("/account").status_code == 200  # nothing changed

    result = cli("users", "set-password", "alice@example.org")
    first, generated = result.stdout.splitlines()
    assert first.startswith("password set for alice@example.org")
    assert_everything_ended(client, rp, tokens)
    # The last event of the command (the token requests that proved the tokens dead come
    # after it, audited as refused).
    assert [e.event for e in audit_events(app) if e.event.startswith("user.")][-1] == (
        "user.password_set"
    )

    from identity.accounts.service import Accounts
    from identity.extensions import db

    with app.app_context():
        accounts = Accounts(db.session, app.extensions["identity"])
        assert accounts.sign_in("alice@example.org", generated).ok
        assert not accounts.sign_in("alice@example.org", PASSWORD).ok


def test_users_list_and_show(app, user, cli):
    """`users list` prints one line per account, `--json` and `show` the details, never
    the password hash."""
    import json

    assert cli("users", "list").stdout.startswith("alice@example.org  verified  -  ")
    [row] = json.loads(cli("users", "list", "--json").stdout)
    assert row["email"] == "alice@example.org" and "password_hash" not in row
    shown = json.loads(cli("users", "show", "ALICE@example.org").stdout)
    assert shown["id"] == row["id"]
    assert shown["login_sessions"] == 0 and shown["connected_apps"] == []
    missing = cli("users", "show", "bob@example.org", ok=False)
    assert missing.exit_code == 1 and "no user with email bob@example.org" in missing.output


def generations(app: Any) -> dict[str, int]:
    from identity.extensions import db
    from identity.models.change import ChangeGeneration

    with app.app_context():
        rows = db.session.execute(select(ChangeGeneration.topic, ChangeGeneration.generation))
        return {topic: generation for topic, generation in rows}


def test_clients_update_changes_only_what_it_is_asked(app, make_client, cli):
    """Redirect URIs, post-logout URIs, name, scope and the first-party flag change in
    place; the id, secret and authentication methods stay; the change is published to
    every process and audited with what changed."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service

    rp = make_client("Shop", post_logout_redirect_uris=["https://rp.test/bye"])
    with app.app_context():
        before = client_service.find(db.session, rp.client_id)
        secret_hash, meta_before = before.client_secret_hash, dict(before.meta)
    published = generations(app).get("clients", 0)

    result = cli(
        "clients",
        "update",
        rp.client_id,
        "--add-redirect-uri",
        "http://127.0.0.1:8400/cb",
        "--no-post-logout-redirect-uris",
        "--scope",
        "openid email",
        "--name",
        "Shop 2",
        "--first-party",
    )
    assert result.stdout == (
        f"updated {rp.client_id}: client_name, post_logout_redirect_uris, redirect_uris, "
        "scope, first_party\n"
    )
    with app.app_context():
        row = client_service.find(db.session, rp.client_id)
        assert row.name == "Shop 2" and row.first_party
        assert row.client_secret_hash == secret_hash
        assert row.meta["redirect_uris"] == [rp.redirect_uri, "http://127.0.0.1:8400/cb"]
        assert row.meta["post_logout_redirect_uris"] == []
        assert row.meta["scope"] == "openid email"
        unchanged = {"post_logout_redirect_uris", "redirect_uris", "scope"}
        assert {k: v for k, v in row.meta.items() if k not in unchanged} == {
            k: v for k, v in meta_before.items() if k not in unchanged
        }
    assert generations(app)["clients"] == published + 1
    update = audit_events(app)[-1]
    assert (update.event, update.client_id) == ("client.update", rp.client_id)
    assert update.data["changed"][0] == "client_name"

    replaced = cli(
        "clients",
        "update",
        rp.client_id,
        "--redirect-uri",
        "https://new.example/cb",
        "--third-party",
    )
    assert replaced.stdout == f"updated {rp.client_id}: redirect_uris, first_party\n"
    assert cli("clients", "update", rp.client_id).stdout == "nothing changed\n"
    assert generations(app)["clients"] == published + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add-redirect-uri", "http://localhost:8400/cb"], "use http://127.0.0.1:8400/cb"),
        (["--remove-redirect-uri", "https://not.registered/cb"], "not a redirect URI of"),
        (["--scope", "openid bogus"], "unknown scopes: bogus"),
        (["--redirect-uri", "https://x.example/cb#frag"], "must not contain a fragment"),
    ],
)
def test_clients_update_refuses_bad_values_and_changes_nothing(
    app, make_client, cli, args, message
):
    """Values are checked as `clients create` checks them; a refused update changes nothing."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service

    rp = make_client()
    published = generations(app).get("clients", 0)
    result = cli("clients", "update", rp.client_id, *args, ok=False)
    assert result.exit_code == 1 and message in result.output
    with app.app_context():
        assert client_service.find(db.session, rp.client_id).meta["redirect_uris"] == [
            rp.redirect_uri
        ]
    assert generations(app).get("clients", 0) == published


def test_clients_update_keeps_how_the_client_authenticates(app, make_client, cli):
    """A client pinned to one secret method stays pinned; an unpinned one stays unpinned."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.scopes import KNOWN_SCOPES

    pinned = make_client(auth_method="client_secret_post")
    with app.app_context():
        meta = normalize_metadata(
            {"redirect_uris": ["https://rp.test/cb"]},
            known_scopes=KNOWN_SCOPES,
            signing_algs=("ES256", "RS256"),
            default_id_token_alg="RS256",
        )
        unpinned = client_service.create_client(db.session, name="Unpinned", meta=meta).client
        unpinned_id = unpinned.client_id
        db.session.commit()
    for client_id in (pinned.client_id, unpinned_id):
        cli("clients", "update", client_id, "--name", "Renamed")
    with app.app_context():
        assert client_service.find(db.session, pinned.client_id).meta["accepted_auth_methods"] == [
            "client_secret_post"
        ]
        assert client_service.find(db.session, unpinned_id).meta["accepted_auth_methods"] == [
            "client_secret_basic",
            "client_secret_post",
        ]


def test_invites_warn_outside_invite_only_registration(app, cli, monkeypatch):
    """The link is printed either way; the warning goes to stderr only when no invitation
    is needed (open) or none can be used (closed)."""
    opened = cli("invites", "create")
    assert opened.stdout.startswith("http://127.0.0.1:8000/register?invite=")
    assert "IDENTITY_REGISTRATION is open" in opened.stderr
    monkeypatch.setenv("IDENTITY_REGISTRATION", "closed")
    assert "nobody may register" in cli("invites", "create").stderr
    monkeypatch.setenv("IDENTITY_REGISTRATION", "invite")
    assert cli("invites", "create").stderr == ""
