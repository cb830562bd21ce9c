"""Login sessions: the cookie, fixation, sign-out, timeouts, and the server-side records."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import time_machine
from sqlalchemy import select

from identity.extensions import db
from identity.models.base import utcnow
from identity.models.session import LoginSession
from identity.models.user import User
from identity.sessions import service
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    add_user,
    audit_events,
    cookie_value,
    count,
    update_user,
)

HTTPS = "https://id.example.org"
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def set_cookies(response):
    """Parsed Set-Cookie headers by cookie name."""
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            cookies[name] = (morsel, header)
    return cookies


def replay(app, name, value, path="/account"):
    """A fresh browser presenting only the given cookie."""
    client = app.test_client()
    client.set_cookie(name, value)
    return client.get(path)


# SESS-01 -----------------------------------------------------------------------------------


def test_SESS_01_session_cookies_are_random_and_only_their_hash_is_stored(app, user):
    """Each sign-in gets a fresh 256-bit token; the database holds only its SHA-256."""
    values = set()
    for _ in range(5):
        client = app.test_client()
        sign_in(client)
        values.add(cookie_value(client, "identity_session"))
    assert len(values) == 5
    assert all(len(value) >= 43 for value in values)  # 32 random bytes, base64url
    with app.app_context():
        stored = set(db.session.execute(select(LoginSession.id_hash)).scalars())
    assert stored == {hashlib.sha256(v.encode()).hexdigest() for v in values}
    assert not stored & values


# SESS-02 -----------------------------------------------------------------------------------


def test_SESS_02_session_id_replaced_at_sign_in(app, user):
    """A cookie planted before sign-in is replaced, and the planted value stays useless."""
    client = app.test_client()
    planted = "attacker-chosen-session-value-0123456789abcdef"
    client.set_cookie("identity_session", planted)
    assert sign_in(client).status_code == 303
    issued = cookie_value(client, "identity_session")
    assert issued != planted
    assert replay(app, "identity_session", planted).status_code == 302
    assert replay(app, "identity_session", issued).status_code == 200


def test_SESS_02_a_cookie_planted_on_the_sign_in_post_itself_is_replaced(app, user):
    """A session cookie naming no session, sent with the sign-in POST itself (planted after
    the form was shown), neither breaks the sign-in nor survives it."""
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").data)
    planted = "attacker-chosen-session-value-0123456789abcdef"
    client.set_cookie("identity_session", planted)
    data = {"csrf_token": token, "email": "alice@example.org", "password": PASSWORD}
    assert client.post("/sign-in", data=data).status_code == 303
    assert cookie_value(client, "identity_session") not in (None, planted)
    assert client.get("/account").status_code == 200


def test_SESS_02_signing_in_again_ends_the_previous_session(app, make_user):
    """Signing in over an existing session ends the old one instead of keeping both."""
    make_user()
    make_user("bob@example.org")
    client = app.test_client()
    sign_in(client)
    first = cookie_value(client, "identity_session")
    # A second tab still shows the sign-in form; its token is the browser's token.
    token = csrf_token(client.get("/sign-out").data)
    data = {"csrf_token": token, "email": "bob@example.org", "password": PASSWORD}
    assert client.post("/sign-in", data=data).status_code == 303
    assert cookie_value(client, "identity_session") != first
    assert replay(app, "identity_session", first).status_code == 302
    assert count(app, LoginSession) == 1
    assert "bob@example.org" in client.get("/account").data.decode()


def test_SESS_02_flask_session_is_renewed_at_sign_in(app, user):
    """The signed Flask cookie (CSRF token) from before sign-in is not carried over."""
    client = app.test_client()
    client.get("/sign-in")
    before = cookie_value(client, "identity")
    response = sign_in(client)
    assert "identity" in set_cookies(response)  # replaced or deleted, never kept as is
    assert cookie_value(client, "identity") != before


# SESS-03 -----------------------------------------------------------------------------------


def test_SESS_03_sign_out_kills_the_session_server_side(app, signed_in):
    """After sign-out, a copy of the old cookie no longer opens the account."""
    old = cookie_value(signed_in, "identity_session")
    response = form_post(signed_in, "/sign-out", {})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert "You are signed out." in signed_in.get("/sign-in").data.decode()
    morsel, _ = set_cookies(response)["identity_session"]
    assert morsel.value == "" and morsel["max-age"] == "0"
    assert replay(app, "identity_session", old).status_code == 302
    assert count(app, LoginSession) == 0


def test_SESS_03_sign_out_renews_the_flask_session_too(app, signed_in):
    """The signed Flask session (the CSRF token) of the signed-in user ends with the sign-out:
    a form token from before no longer works, a fresh one does."""
    old = csrf_token(signed_in.get("/sign-out").data)
    assert signed_in.post("/sign-out", data={"csrf_token": old}).status_code == 303
    data = {"csrf_token": old, "email": "alice@example.org", "password": PASSWORD}
    assert signed_in.post("/sign-in", data=data).status_code == 400
    assert count(app, LoginSession) == 0
    assert sign_in(signed_in).status_code == 303


def test_SESS_03_the_signed_out_page_shows_nobody_signed_in(signed_in):
    """The page answering a confirmed logout already shows the browser signed out: no
    email of the user who just left."""
    page = signed_in.get("/logout")
    assert b"alice@example.org" in page.data
    done = signed_in.post("/logout/confirm", data={"csrf_token": csrf_token(page.data)})
    assert done.status_code == 200 and b"You are signed out" in done.data
    assert b"alice@example.org" not in done.data


def test_SESS_03_sign_out_is_audited(app, signed_in, user):
    """Signing out writes a user.sign_out event."""
    form_post(signed_in, "/sign-out", {})
    events = audit_events(app, "user.sign_out")
    assert [(e["actor_id"], e["subject_id"]) for e in events] == [(user, user)]


def test_SESS_03_sign_out_without_a_session_is_harmless(client):
    """Posting sign-out while signed out just returns to sign-in."""
    token = csrf_token(client.get("/sign-in").data)
    response = client.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"


def test_SESS_03_requests_without_a_cookie_get_no_cookie_deletion(client):
    """Only a cookie naming no session is deleted: a browser that sent none is told
    nothing about it."""
    response = client.get("/sign-in")
    assert response.status_code == 200
    assert "identity_session" not in set_cookies(response)


def test_static_files_and_health_checks_never_look_the_session_up(app, client, monkeypatch):
    """Static files and the health endpoints neither resolve nor clear the session cookie
    (no database work, no activity recorded); pages do."""
    looked_up: list[str] = []
    real = service.resolve

    def spy(session, token, policy, now=None):
        looked_up.append(token)
        return real(session, token, policy, now)

    monkeypatch.setattr(service, "resolve", spy)
    client.set_cookie("identity_session", "no-such-session")
    for path in ("/static/style.css", "/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "identity_session" not in set_cookies(response), path
    assert looked_up == []
    response = client.get("/sign-in")
    assert looked_up == ["no-such-session"]
    assert set_cookies(response)["identity_session"][0]["max-age"] == "0"


def test_SESS_03_unknown_cookie_is_cleared(app, client):
    """A cookie that names no session is treated as signed out and deleted."""
    client.set_cookie("identity_session", "no-such-session")
    response = client.get("/account")
    assert response.status_code == 302
    assert set_cookies(response)["identity_session"][0]["max-age"] == "0"


# SESS-04 -----------------------------------------------------------------------------------


def test_SESS_04_disabled_user_is_signed_out_at_once(app, signed_in):
    """Disabling an account ends its live sessions on the next request."""
    update_user(app, "alice@example.org", disabled_at=utcnow())
    assert signed_in.get("/account").status_code == 302
    assert count(app, LoginSession) == 0


# SESS-07 -----------------------------------------------------------------------------------


def test_SESS_07_idle_timeout_ends_the_session(app_factory):
    """A session unused for session_idle_timeout needs a new sign-in."""
    app = app_factory(session_idle_timeout=600)
    add_user(app)
    with time_machine.travel(START, tick=False) as traveller:
        client = app.test_client()
        sign_in(client)
        token = cookie_value(client, "identity_session")
        traveller.shift(timedelta(seconds=590))
        assert replay(app, "identity_session", token).status_code == 200
        traveller.shift(timedelta(seconds=601))
        response = replay(app, "identity_session", token)
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/account"
    assert count(app, LoginSession) == 0


def test_SESS_07_activity_keeps_the_session_alive_until_the_absolute_timeout(app_factory):
    """Regular use extends the idle timeout, but never past session_absolute_timeout."""
    app = app_factory(session_idle_timeout=600, session_absolute_timeout=1800)
    add_user(app)
    with time_machine.travel(START, tick=False) as traveller:
        client = app.test_client()
        sign_in(client)
        token = cookie_value(client, "identity_session")
        for _ in range(3):  # t = 500, 1000, 1500: each within the idle timeout of the last
            traveller.shift(timedelta(seconds=500))
            assert replay(app, "identity_session", token).status_code == 200
        traveller.shift(timedelta(seconds=301))  # t = 1801: past the absolute timeout
        assert replay(app, "identity_session", token).status_code == 302
    assert count(app, LoginSession) == 0


def test_SESS_07_cookie_lifetime_matches_the_absolute_timeout(app_factory):
    """The browser is told to drop the cookie when the session ends at the latest."""
    app = app_factory(session_absolute_timeout=1800)
    add_user(app)
    response = sign_in(app.test_client())
    morsel, _ = set_cookies(response)["identity_session"]
    assert morsel["max-age"] == "1800"


def test_SESS_07_service_resolve_honours_both_timeouts(app, user):
    """resolve() with an explicit clock: idle and absolute limits, and deletion of the dead."""
    policy = service.SessionPolicy(timedelta(minutes=10), timedelta(minutes=30))
    with app.app_context():
        alice = db.session.get(User, user)
        token, _ = service.start(db.session, alice, policy, amr=["pwd"], now=START)
        db.session.commit()
        idle, _ = service.start(db.session, alice, policy, amr=["pwd"], now=START)
        db.session.commit()

        def alive(value, minutes):
            return service.resolve(db.session, value, policy, START + timedelta(minutes=minutes))

        # Each use within 10 minutes of the last one keeps the session ...
        assert alive(token, 9) and alive(token, 18) and alive(token, 27)
        # ... until 30 minutes after sign-in, however active it is.
        assert alive(token, 30) is None
        # The untouched session died of idleness at 10 minutes.
        assert alive(idle, 10) is None
        db.session.commit()
        for value in (token, idle):
            assert db.session.get(LoginSession, hashlib.sha256(value.encode()).hexdigest()) is None


def test_SESS_07_purge_expired_removes_only_dead_sessions(app, user):
    """purge_expired() deletes idle and over-age sessions and keeps live ones."""
    policy = service.SessionPolicy(timedelta(minutes=10), timedelta(minutes=30))
    with app.app_context():
        alice = db.session.get(User, user)
        service.start(db.session, alice, policy, amr=["pwd"], now=START)
        service.start(db.session, alice, policy, amr=["pwd"], now=START + timedelta(minutes=25))
        db.session.commit()
        assert service.purge_expired(db.session, policy, now=START + timedelta(minutes=31)) == 1
        db.session.commit()
    assert count(app, LoginSession) == 1


# SESS-10 -----------------------------------------------------------------------------------


def test_SESS_10_cookie_attributes_over_http(client, user):
    """On a plain-http issuer the session cookie is HttpOnly, SameSite=Lax, Path=/."""
    response = sign_in(client)
    morsel, header = set_cookies(response)["identity_session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["domain"]
    assert len(header) < 4096


def test_SESS_10_cookie_attributes_over_https(app_factory):
    """With an https issuer every cookie is __Host-, Secure, HttpOnly, SameSite=Lax, Path=/."""
    app = app_factory(issuer=HTTPS)
    add_user(app)
    client = app.test_client()
    page = client.get("/sign-in", base_url=HTTPS)
    data = {"csrf_token": csrf_token(page.data), "email": "alice@example.org", "password": PASSWORD}
    response = client.post(
        "/sign-in", base_url=HTTPS, data=data, headers={"Referer": HTTPS + "/sign-in"}
    )
    assert response.status_code == 303
    cookies = {**set_cookies(page), **set_cookies(response)}
    assert {"__Host-identity_session", "__Host-identity_device", "__Host-identity"} <= set(cookies)
    assert "identity_session" not in cookies
    for name, (morsel, header) in cookies.items():
        assert morsel["secure"] is True, name
        assert morsel["httponly"] is True, name
        assert morsel["samesite"] == "Lax", name
        assert morsel["path"] == "/", name
        assert not morsel["domain"], name
        assert len(header) < 4096, name
    assert client.get("/account", base_url=HTTPS).status_code == 200


def test_SESS_10_the_cookie_is_deleted_with_the_attributes_it_was_set_with(app_factory):
    """Signing out over https deletes __Host-identity_session with Secure and Path=/ (which
    browsers require before they accept it for a __Host- cookie), HttpOnly and
    SameSite=Lax."""
    app = app_factory(issuer=HTTPS)
    add_user(app)
    client = app.test_client()
    referer = {"Referer": HTTPS + "/sign-in"}
    page = client.get("/sign-in", base_url=HTTPS)
    data = {"csrf_token": csrf_token(page.data), "email": "alice@example.org", "password": PASSWORD}
    assert client.post("/sign-in", base_url=HTTPS, data=data, headers=referer).status_code == 303
    page = client.get("/sign-out", base_url=HTTPS)
    response = client.post(
        "/sign-out",
        base_url=HTTPS,
        data={"csrf_token": csrf_token(page.data)},
        headers={"Referer": HTTPS + "/sign-out"},
    )
    assert response.status_code == 303
    morsel, _ = set_cookies(response)["__Host-identity_session"]
    assert morsel.value == "" and morsel["max-age"] == "0"
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"


def test_a_password_sign_in_is_recorded_as_one_factor(app, user):
    """The session records amr ["pwd"] and the one-factor acr; two different methods (a
    password and a one-time code) would make it two-factor, the same method twice would
    not."""
    from identity.auth.methods import ACR_ONE_FACTOR, ACR_TWO_FACTORS, acr_for

    assert acr_for(["pwd"]) == ACR_ONE_FACTOR == "urn:identity:loa:1fa"
    assert acr_for(["pwd", "pwd"]) == ACR_ONE_FACTOR
    assert acr_for(["pwd", "otp"]) == ACR_TWO_FACTORS == "urn:identity:loa:2fa"
    assert acr_for(["pwd", "otp", "hwk"]) == ACR_TWO_FACTORS
    assert sign_in(app.test_client()).status_code == 303
    with app.app_context():
        record = db.session.execute(select(LoginSession)).scalar_one()
        assert (record.amr, record.acr) == (["pwd"], ACR_ONE_FACTOR)


def test_sign_in_and_sign_out_take_effect_for_the_rest_of_the_request(app, user):
    """Within the request that signs in, the user and the new session (with the acr a
    caller names, or the one derived from amr) are current at once; after sign_out,
    nobody and no session is."""
    from flask import g

    from identity.sessions import current_user, sign_in, sign_out

    with app.test_request_context("/sign-in", method="POST"):
        alice = db.session.get(User, user)
        sign_in(alice, amr=["pwd"], acr="urn:example:acr")
        assert current_user() is alice
        assert g.login_session.user_id == alice.id
        assert (g.login_session.amr, g.login_session.acr) == (["pwd"], "urn:example:acr")
        sign_out()
        assert current_user() is None
        assert g.login_session is None


def test_account_page_shows_the_session(signed_in):
    """The account page shows the email and when this session signed in."""
    html = signed_in.get("/account").data.decode()
    assert "Your account" in html
    assert "alice@example.org" in html
    assert "UTC" in html


def test_root_redirects_by_session_state(client, user):
    """/ leads to sign-in when signed out and to the account when signed in."""
    assert client.get("/").headers["Location"] == "/sign-in"
    sign_in(client)
    assert client.get("/").headers["Location"] == "/account"
