"""RFC 9700 sections 2.2.2 and 4.14: refresh tokens rotate, are bound to their client and
scope, expire, and die with the credentials they came from (BCP-24 .. BCP-30, BCP-49)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import time_machine

from tests.conftest import PASSWORD, Mailbox, form_post
from tests.oauth.bcp_support import (
    assert_dead,
    code_for,
    install_keys,
    introspect,
    race,
    redeem,
    refresh,
    signed_in_browser,
    tokens_for,
    userinfo_status,
)


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


@pytest.fixture
def rp(make_client):
    return make_client(first_party=True)


@pytest.fixture
def public_rp(make_client):
    return make_client(first_party=True, auth_method="none")


@pytest.fixture
def browser(app, user):
    return signed_in_browser(app)


def public_tokens(browser, rp, **params):
    callback, verifier = code_for(browser, rp, **params)
    response = browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": rp.redirect_uri,
            "client_id": rp.client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.json
    return response.json


def public_refresh(client, rp, refresh_token, **extra):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": rp.client_id,
        **extra,
    }
    return client.post("/oauth/token", data=data)


def is_invalid_grant(response) -> bool:
    return response.status_code == 400 and response.json["error"] == "invalid_grant"


# BCP-24 ---------------------------------------------------------------------------------


def test_BCP_24_public_client_refresh_tokens_rotate_and_reuse_kills_the_family(
    public_rp, browser, client
):
    """RT1 -> RT2; presenting RT1 again is invalid_grant and RT2 (and its AT) die too."""
    first = public_tokens(browser, public_rp)
    second = public_refresh(client, public_rp, first["refresh_token"])
    assert second.status_code == 200, second.json
    rt2 = second.json["refresh_token"]
    assert rt2 != first["refresh_token"]
    assert is_invalid_grant(public_refresh(client, public_rp, first["refresh_token"]))
    assert is_invalid_grant(public_refresh(client, public_rp, rt2))
    assert userinfo_status(client, second.json["access_token"]) == 401
    assert userinfo_status(client, first["access_token"]) == 401


def test_BCP_24_confidential_client_refresh_tokens_rotate_too(rp, browser, client):
    """Every refresh returns a new RT; the old one is refused and revokes the family."""
    tokens = tokens_for(browser, rp)
    seen = {tokens["refresh_token"]}
    current = tokens
    for _ in range(3):
        response = refresh(client, rp, current["refresh_token"])
        assert response.status_code == 200, response.json
        current = response.json
        assert current["refresh_token"] not in seen
        seen.add(current["refresh_token"])
    assert is_invalid_grant(refresh(client, rp, tokens["refresh_token"]))
    assert_dead(client, rp, current)


def test_BCP_24_a_rotated_token_introspects_as_inactive(rp, browser, client):
    """Once rotated, RT1 is reported inactive while RT2 is active."""
    tokens = tokens_for(browser, rp)
    rt2 = refresh(client, rp, tokens["refresh_token"]).json["refresh_token"]
    assert introspect(client, rp, tokens["refresh_token"])["active"] is False
    assert introspect(client, rp, rt2)["active"] is True


def test_BCP_24_grace_period_lets_a_concurrent_reuse_through(
    app_factory, make_client, user, client
):
    """With a grace period a just-rotated RT still works once more, and nothing is revoked."""
    server = app_factory(refresh_token_grace_period=30)
    rp = make_client(first_party=True)
    api = server.test_client()
    tokens = tokens_for(signed_in_browser(server), rp)
    second = refresh(api, rp, tokens["refresh_token"])
    assert second.status_code == 200
    again = refresh(api, rp, tokens["refresh_token"])
    assert again.status_code == 200, again.json
    assert refresh(api, rp, second.json["refresh_token"]).status_code == 200
    assert refresh(api, rp, again.json["refresh_token"]).status_code == 200


def test_BCP_24_reuse_after_the_grace_period_kills_the_family(app_factory, make_client, user):
    """Past the grace period, reuse of RT1 is invalid_grant and revokes RT2."""
    server = app_factory(refresh_token_grace_period=30)
    rp = make_client(first_party=True)
    api = server.test_client()
    tokens = tokens_for(signed_in_browser(server), rp)
    second = refresh(api, rp, tokens["refresh_token"]).json
    with time_machine.travel(time.time() + 31, tick=True):
        assert is_invalid_grant(refresh(api, rp, tokens["refresh_token"]))
        assert_dead(api, rp, second)


# BCP-25 ---------------------------------------------------------------------------------


def test_BCP_25_twenty_parallel_refreshes_yield_one_token_and_no_fork(app, rp, browser, client):
    """Of 20 concurrent refreshes of one RT exactly one succeeds, and the reuse then revokes
    the family, so no second branch lives on."""
    tokens = tokens_for(browser, rp)
    responses = race(app, 20, lambda c: refresh(c, rp, tokens["refresh_token"]))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 19, statuses
    assert {r.json["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    winner = next(r.json for r in responses if r.status_code == 200)
    assert_dead(client, rp, winner)
    assert_dead(client, rp, tokens)


def test_BCP_25_parallel_refreshes_within_the_grace_period_all_succeed(
    app_factory, make_client, user
):
    """With a grace period, clients that refresh concurrently are not punished: every
    request succeeds and no token is revoked."""
    server = app_factory(refresh_token_grace_period=30)
    rp = make_client(first_party=True)
    tokens = tokens_for(signed_in_browser(server), rp)
    responses = race(server, 8, lambda c: refresh(c, rp, tokens["refresh_token"]))
    assert [r.status_code for r in responses] == [200] * 8, [r.json for r in responses]
    api = server.test_client()
    for response in responses:
        assert userinfo_status(api, response.json["access_token"]) == 200
        assert introspect(api, rp, response.json["refresh_token"])["active"] is True


# BCP-26 ---------------------------------------------------------------------------------


def test_BCP_26_another_confidential_client_cannot_use_the_refresh_token(
    rp, browser, client, make_client
):
    """Client B with its own valid credentials gets invalid_grant for A's refresh token."""
    other = make_client()
    tokens = tokens_for(browser, rp)
    response = refresh(client, other, tokens["refresh_token"])
    assert is_invalid_grant(response)
    assert "access_token" not in response.json


@pytest.mark.parametrize("how", ["no_credentials", "wrong_secret", "client_id_only"])
def test_BCP_26_confidential_client_must_authenticate_to_refresh(rp, browser, client, how):
    """Without A's secret, A's refresh token gets invalid_client (401)."""
    from tests.oauth.conftest import RegisteredClient

    tokens = tokens_for(browser, rp)
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    if how == "no_credentials":
        response = client.post("/oauth/token", data=data)
    elif how == "wrong_secret":
        wrong = RegisteredClient(rp.client_id, "not-the-secret", rp.redirect_uri)
        response = client.post("/oauth/token", data=data, headers=wrong.basic_auth())
    else:
        response = client.post("/oauth/token", data={**data, "client_id": rp.client_id})
    assert response.status_code == 401, response.json
    assert response.json["error"] == "invalid_client"


def test_BCP_26_public_clients_cannot_swap_refresh_tokens(public_rp, browser, client, make_client):
    """A public client naming itself cannot use another public client's refresh token."""
    other = make_client(auth_method="none")
    tokens = public_tokens(browser, public_rp)
    assert is_invalid_grant(public_refresh(client, other, tokens["refresh_token"]))


# BCP-27 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope", ["openid profile email offline_access", "openid roles", "openid admin"]
)
def test_BCP_27_refresh_cannot_widen_the_scope(rp, browser, client, scope):
    """A scope beyond what was granted is invalid_scope."""
    tokens = tokens_for(browser, rp, scope="openid profile")
    response = refresh(client, rp, tokens["refresh_token"], scope=scope)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_scope"


def test_BCP_27_refresh_may_narrow_the_scope(rp, browser, client):
    """A narrower scope is granted and is what the new access token carries."""
    tokens = tokens_for(browser, rp, scope="openid profile email")
    response = refresh(client, rp, tokens["refresh_token"], scope="openid email")
    assert response.status_code == 200, response.json
    assert set(response.json["scope"].split()) == {"openid", "email"}
    info = introspect(client, rp, response.json["access_token"])
    assert set(info["scope"].split()) == {"openid", "email"}
    claims = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {response.json['access_token']}"}
    ).json
    assert "email" in claims and "name" not in claims


# BCP-28 ---------------------------------------------------------------------------------


def test_BCP_28_password_change_revokes_refresh_and_access_tokens(rp, browser, client):
    """Changing the password ends every grant of the user."""
    tokens = tokens_for(browser, rp)
    response = form_post(
        browser,
        "/account/password",
        {"current_password": PASSWORD, "new_password": "a completely new passphrase"},
    )
    assert response.status_code == 303, response.data
    assert_dead(client, rp, tokens)


def test_BCP_28_password_reset_revokes_refresh_and_access_tokens(app, rp, browser, client):
    """Resetting the password by mail ends every grant of the user."""
    mailbox = Mailbox(app)
    tokens = tokens_for(browser, rp)
    stranger = app.test_client()
    form_post(stranger, "/forgot-password", {"email": "alice@example.org"})
    link = mailbox.last_link("alice@example.org")
    response = form_post(stranger, link, {"password": "a completely new passphrase"})
    assert response.status_code == 303, response.data
    assert_dead(client, rp, tokens)


def test_BCP_28_disabling_the_user_revokes_refresh_and_access_tokens(app, rp, browser, client):
    """An administrator disabling the account ends every grant at once."""
    from identity.accounts.management import set_disabled
    from identity.extensions import db
    from identity.models.user import User

    tokens = tokens_for(browser, rp)
    with app.app_context():
        row = db.session.query(User).filter_by(email="alice@example.org").one()
        set_disabled(db.session, row, True, access_token_lifetime=600)
        db.session.commit()
    assert_dead(client, rp, tokens)


def test_BCP_28_sign_out_revokes_session_bound_grants_but_not_offline_ones(rp, browser, client):
    """Signing out ends grants tied to the login session; offline_access grants survive
    (the documented policy)."""
    from tests.conftest import csrf_token

    online = tokens_for(browser, rp, scope="openid profile")
    offline = tokens_for(browser, rp, scope="openid offline_access")
    page = browser.get("/sign-out")
    response = browser.post("/sign-out", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    assert_dead(client, rp, online)
    assert refresh(client, rp, offline["refresh_token"]).status_code == 200


def login_sessions(app) -> list[tuple[str, str]]:
    """(email, sid) of every login session."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.session import LoginSession
    from identity.models.user import User

    with app.app_context():
        rows = db.session.execute(
            select(User.email, LoginSession.sid).join(User, LoginSession.user_id == User.id)
        )
        return [tuple(row) for row in rows]


def sign_in_again(browser, email: str = "alice@example.org") -> int:
    """The sign-in form of a browser already signed in, as prompt=login shows it."""
    from tests.conftest import csrf_token

    page = browser.get("/sign-in?force=1")
    data = {"csrf_token": csrf_token(page.data), "email": email, "password": PASSWORD}
    return browser.post("/sign-in", data=data).status_code


def test_BCP_28_another_user_signing_in_ends_the_previous_users_session_grants(
    app, rp, browser, client, make_user
):
    """Someone else signing in on this browser signs the previous user out: the grants of
    that session end, and the new session gets a public sid of its own."""
    online = tokens_for(browser, rp, scope="openid profile")
    [(_, alice_sid)] = login_sessions(app)
    make_user("bob@example.org")
    assert sign_in_again(browser, "bob@example.org") == 303
    assert_dead(client, rp, online)
    [(email, sid)] = login_sessions(app)
    assert email == "bob@example.org" and sid != alice_sid


def test_BCP_28_signing_in_again_as_the_same_user_keeps_the_session_grants(
    app, rp, browser, client
):
    """Re-authentication (prompt=login, max_age) gives a new cookie but keeps the public
    sid, so that the grants of the session keep working."""
    online = tokens_for(browser, rp, scope="openid profile")
    [(_, sid)] = login_sessions(app)
    assert sign_in_again(browser) == 303
    assert login_sessions(app) == [("alice@example.org", sid)]
    assert userinfo_status(client, online["access_token"]) == 200
    assert refresh(client, rp, online["refresh_token"]).status_code == 200


# BCP-29 ---------------------------------------------------------------------------------


def test_BCP_29_an_idle_refresh_token_expires(app_factory, make_client, user):
    """A refresh token unused for longer than the idle lifetime is refused."""
    server = app_factory(refresh_token_idle_lifetime=300, refresh_token_absolute_lifetime=900)
    rp = make_client(first_party=True)
    api = server.test_client()
    tokens = tokens_for(signed_in_browser(server), rp)
    with time_machine.travel(time.time() + 301, tick=True):
        assert is_invalid_grant(refresh(api, rp, tokens["refresh_token"]))
        assert introspect(api, rp, tokens["refresh_token"])["active"] is False


def test_BCP_29_a_sliding_refresh_token_ends_at_the_absolute_lifetime(
    app_factory, make_client, user
):
    """Refreshing keeps a family alive only until its absolute lifetime."""
    server = app_factory(refresh_token_idle_lifetime=300, refresh_token_absolute_lifetime=600)
    rp = make_client(first_party=True)
    api = server.test_client()
    tokens = tokens_for(signed_in_browser(server), rp)
    start = time.time()
    current = tokens["refresh_token"]
    for offset in (250, 500):
        with time_machine.travel(start + offset, tick=True):
            response = refresh(api, rp, current)
            assert response.status_code == 200, (offset, response.json)
            current = response.json["refresh_token"]
            assert introspect(api, rp, current)["exp"] <= int(start) + 601
    with time_machine.travel(start + 601, tick=True):
        assert is_invalid_grant(refresh(api, rp, current))


# BCP-30 ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tampered(token: str, how: str, other_kid: str) -> str:
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(unb64(header_b64))
    payload = json.loads(unb64(payload_b64))
    if how == "flip_signature":
        raw = bytearray(unb64(signature_b64))
        raw[len(raw) // 2] ^= 0x01
        return f"{header_b64}.{payload_b64}.{b64(bytes(raw))}"
    if how == "flip_payload":
        raw = bytearray(unb64(payload_b64))
        raw[len(raw) // 2] ^= 0x01
        return f"{header_b64}.{b64(bytes(raw))}.{signature_b64}"
    if how == "widen_scope":
        payload["scope"] = "openid profile email roles admin"
        return f"{header_b64}.{b64(json.dumps(payload).encode())}.{signature_b64}"
    if how == "strip_signature":
        return f"{header_b64}.{payload_b64}."
    if how == "alg_none":
        header["alg"] = "none"
        return f"{b64(json.dumps(header).encode())}.{payload_b64}."
    if how == "unknown_kid":
        header["kid"] = "not-a-key"
    elif how == "other_kid":
        header["kid"] = other_kid
    return f"{b64(json.dumps(header).encode())}.{payload_b64}.{signature_b64}"


@pytest.mark.parametrize(
    "how",
    [
        "flip_signature",
        "flip_payload",
        "widen_scope",
        "strip_signature",
        "alg_none",
        "unknown_kid",
        "other_kid",
    ],
)
def test_BCP_30_tampered_access_tokens_are_rejected(app, rp, browser, client, how):
    """A self-contained access token with any change to header, payload or signature fails
    at userinfo and introspection."""
    tokens = tokens_for(browser, rp)
    header = json.loads(unb64(tokens["access_token"].split(".")[0]))
    jwks = client.get("/jwks.json").json["keys"]
    other_kid = next(k["kid"] for k in jwks if k["kid"] != header["kid"])
    forged = tampered(tokens["access_token"], how, other_kid)
    assert forged != tokens["access_token"]
    assert userinfo_status(client, forged) == 401
    assert introspect(client, rp, forged)["active"] is False
    assert userinfo_status(client, tokens["access_token"]) == 200  # the original still works


def test_BCP_30_an_id_token_is_not_an_access_token(rp, browser, client):
    """The ID token, signed by the same server, is refused where an access token is due."""
    tokens = tokens_for(browser, rp)
    assert userinfo_status(client, tokens["id_token"]) == 401
    assert introspect(client, rp, tokens["id_token"])["active"] is False


@pytest.mark.parametrize("position", [0, 10, -1])
def test_BCP_30_an_altered_refresh_token_is_useless(rp, browser, client, position):
    """Refresh tokens are opaque and looked up by hash: one changed character fails."""
    tokens = tokens_for(browser, rp)
    token = tokens["refresh_token"]
    changed = "A" if token[position] != "A" else "B"
    forged = token[:position] + changed + (token[position + 1 :] if position != -1 else "")
    assert is_invalid_grant(refresh(client, rp, forged))
    assert refresh(client, rp, token).status_code == 200


# BCP-49 (P2) ----------------------------------------------------------------------------


def test_BCP_49_clients_without_the_refresh_grant_get_no_refresh_token(
    browser, client, make_client
):
    """Refresh tokens are issued only to clients registered for the refresh_token grant."""
    rp = make_client(first_party=True, grant_types=["authorization_code"])
    tokens = tokens_for(browser, rp, scope="openid offline_access")
    assert "refresh_token" not in tokens


def test_BCP_49_public_clients_get_rotating_refresh_tokens_only(public_rp, browser, client):
    """A public client's refresh always comes with a new refresh token (rotation)."""
    tokens = public_tokens(browser, public_rp)
    response = public_refresh(client, public_rp, tokens["refresh_token"])
    assert response.status_code == 200
    assert response.json["refresh_token"] != tokens["refresh_token"]


def test_BCP_49_code_redemption_without_the_refresh_grant_cannot_refresh(
    browser, client, make_client
):
    """A client not registered for refresh_token cannot use the grant at all."""
    rp = make_client(first_party=True, grant_types=["authorization_code"])
    callback, verifier = code_for(browser, rp)
    assert redeem(client, rp, callback["code"], verifier).status_code == 200
    response = refresh(client, rp, "whatever")
    assert response.status_code == 400
    assert response.json["error"] == "unauthorized_client"
