"""The user's own sessions page: every signed-in browser, named from its User-Agent, and
ending one, every other, or all of them with every app's access (SESS-09)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import csrf_token, form_post, sign_in

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def browser(app: Flask, user_agent: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    assert sign_in(client).status_code == 303
    return client


def post(client: FlaskClient, path: str) -> Any:
    page = client.get("/account/sessions")
    return client.post(path, data={"csrf_token": csrf_token(page.data)})


def sids(app: Flask) -> set[str]:
    from identity.extensions import db
    from identity.models.session import LoginSession

    with app.app_context():
        return set(db.session.execute(select(LoginSession.sid)).scalars())


def test_SESS_09_the_page_names_each_browser_and_marks_this_one(app: Flask, user: Any) -> None:
    laptop = browser(app, FIREFOX)
    browser(app, IPHONE)
    page = laptop.get("/account/sessions").text
    assert "Firefox 132 on Windows" in page
    assert "Mobile Safari 17 on iOS, iPhone" in page
    assert page.count('data-testid="session"') == 2
    assert page.index("this browser") < page.index("Mobile Safari")  # this one first


def test_SESS_09_end_one_other_browser(app: Flask, user: Any) -> None:
    laptop = browser(app, FIREFOX)
    phone = browser(app, IPHONE)
    before = sids(app)
    phone_sid = next(iter(before - _current_sid(app, laptop)))
    answer = post(laptop, f"/account/sessions/{phone_sid}/end")
    assert answer.status_code == 303
    assert phone.get("/account").status_code == 302  # the phone is signed out
    assert laptop.get("/account").status_code == 200
    assert post(laptop, "/account/sessions/not-a-session/end").status_code == 303  # no 500


def test_SESS_09_end_the_others_keeps_this_one(app: Flask, user: Any) -> None:
    laptop = browser(app, FIREFOX)
    others = [browser(app, IPHONE), browser(app, FIREFOX)]
    post(laptop, "/account/sessions/end-others")
    assert laptop.get("/account").status_code == 200
    assert all(other.get("/account").status_code == 302 for other in others)
    assert len(sids(app)) == 1


def test_SESS_09_sign_out_everywhere_ends_apps_access_too(app: Flask, user: Any) -> None:
    from identity.extensions import db
    from identity.models.audit import AuditEvent
    from identity.models.oauth import TokenRevocation

    laptop = browser(app, FIREFOX)
    phone = browser(app, IPHONE)
    answer = post(laptop, "/account/sessions/end-all")
    assert answer.status_code == 303 and answer.location == "/sign-in"
    assert laptop.get("/account").status_code == 302
    assert phone.get("/account").status_code == 302
    assert sids(app) == set()
    with app.app_context():
        # Every access token of the user stops working (the user-wide revocation).
        assert db.session.query(TokenRevocation).filter(TokenRevocation.key.like("sub:%")).count()
        assert db.session.query(AuditEvent).filter_by(event="user.signed_out_everywhere").count()


def test_SESS_09_the_page_needs_a_signed_in_user_and_a_csrf_token(
    app: Flask, user: Any, client: FlaskClient
) -> None:
    assert client.get("/account/sessions").status_code == 302
    laptop = browser(app, FIREFOX)
    assert laptop.post("/account/sessions/end-all").status_code == 400
    assert laptop.get("/account").status_code == 200


def _current_sid(app: Flask, client: FlaskClient) -> set[str]:
    """The sid of the session this client's cookie holds."""
    from identity.extensions import db
    from identity.models.session import LoginSession
    from identity.random_tokens import token_hash

    cookie = client.get_cookie("identity_session")
    assert cookie is not None
    with app.app_context():
        record = db.session.get(LoginSession, token_hash(cookie.value))
        assert record is not None
        return {record.sid}


def test_SESS_14_a_new_browser_signing_in_is_mailed(app: Flask, user: Any, mailbox: Any) -> None:
    """The right password from a browser that never signed in to the account tells the
    owner (browser, system, address, where to sign it out); a known browser does not, nor
    does the account's very first sign-in."""
    laptop = browser(app, FIREFOX)  # the first sign-in ever
    assert mailbox.to("alice@example.org") == []
    assert form_post(laptop, "/sign-out", {}).status_code == 303
    assert sign_in(laptop).status_code == 303  # the same browser again: known
    assert mailbox.to("alice@example.org") == []
    browser(app, IPHONE)
    mails = mailbox.to("alice@example.org")
    assert [m["Subject"] for m in mails] == ["New sign-in to your account"]
    body = mails[0].get_content()
    assert "Mobile Safari 17 on iOS, iPhone" in body and "/account/sessions" in body


def test_SESS_09_operators_sign_a_user_out_everywhere_from_the_command_line(
    app: Flask, user: Any, monkeypatch: Any
) -> None:
    from click.testing import CliRunner

    from identity.cli import cli
    from identity.cli import users as _  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())
    laptop, phone = browser(app, FIREFOX), browser(app, IPHONE)
    result = CliRunner().invoke(cli, ["users", "sign-out", "alice@example.org"])
    assert result.exit_code == 0, result.output
    assert "signed out alice@example.org everywhere (2 sessions)" in result.output
    assert laptop.get("/account").status_code == 302
    assert phone.get("/account").status_code == 302
