"""SESS-04: disabling a signed-in user ends the browser session and every token at once."""

from __future__ import annotations

from click.testing import CliRunner

from tests.oauth.conftest import token_request


def test_SESS_04_disabled_user_loses_session_access_and_refresh_tokens(
    app, flow, rp, client, monkeypatch
):
    """After `identity users disable`, cookie, access token and refresh token are all refused."""
    params, verifier = flow.authorize(rp)
    tokens = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200

    from identity.accounts.management import set_disabled
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        user = db.session.query(User).filter_by(email="alice@example.org").one()
        set_disabled(db.session, user, True, access_token_lifetime=600)
        db.session.commit()

    assert client.get("/account").status_code == 302  # back to sign-in
    assert client.get("/userinfo", headers=bearer).status_code == 401
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    introspection = client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=rp.basic_auth()
    )
    assert introspection.json == {"active": False}


def test_cli_disable_and_enable(app, user, monkeypatch, tmp_path):
    """`identity users disable` then `enable` flips the account and says so."""
    from identity.cli import cli
    from identity.cli import users as _  # noqa: F401 - registers the commands
    from identity.extensions import db
    from identity.models.user import User

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())
    runner = CliRunner()
    result = runner.invoke(cli, ["users", "disable", "Alice@Example.org"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert (
            db.session.query(User).filter_by(email="alice@example.org").one().disabled_at
            is not None
        )
    result = runner.invoke(cli, ["users", "enable", "alice@example.org"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.query(User).filter_by(email="alice@example.org").one().disabled_at is None
    assert runner.invoke(cli, ["users", "disable", "nobody@example.org"]).exit_code == 1
