"""RFC 9700 section 4.2.4 / RFC 6749 section 4.1.2: authorization codes are single use,
short-lived and bound to their client and redirect URI (BCP-15 .. BCP-20)."""

from __future__ import annotations

import time

import pytest
import time_machine

from tests.oauth.bcp_support import (
    assert_dead,
    code_for,
    install_keys,
    introspect,
    race,
    redeem,
    refresh,
    signed_in_browser,
    userinfo_status,
)
from tests.oauth.conftest import token_request


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


@pytest.fixture
def rp(make_client):
    return make_client(first_party=True)


@pytest.fixture
def browser(app, user):
    return signed_in_browser(app)


# BCP-15 ---------------------------------------------------------------------------------


def test_BCP_15_a_code_is_redeemed_once(rp, browser, client):
    """The second redemption of a code, right after the first, is invalid_grant."""
    callback, verifier = code_for(browser, rp)
    assert redeem(client, rp, callback["code"], verifier).status_code == 200
    again = redeem(client, rp, callback["code"], verifier)
    assert again.status_code == 400
    assert again.json["error"] == "invalid_grant"
    assert "access_token" not in again.json


def test_BCP_15_a_code_replayed_30_seconds_later_is_invalid_grant(rp, browser, client):
    """A replay within the code's lifetime but 30 seconds on still fails."""
    callback, verifier = code_for(browser, rp)
    assert redeem(client, rp, callback["code"], verifier).status_code == 200
    with time_machine.travel(time.time() + 30, tick=True):
        again = redeem(client, rp, callback["code"], verifier)
    assert again.status_code == 400
    assert again.json["error"] == "invalid_grant"


def test_BCP_15_a_replay_by_another_client_does_not_count_as_the_first_use(
    rp, browser, client, make_client
):
    """A replay is judged on the code, not on who presents it: the owner's second try fails."""
    callback, verifier = code_for(browser, rp)
    assert redeem(client, rp, callback["code"], verifier).status_code == 200
    other = make_client()
    assert redeem(client, other, callback["code"], verifier).json["error"] == "invalid_grant"
    assert redeem(client, rp, callback["code"], verifier).json["error"] == "invalid_grant"


# BCP-16 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0, 30])
def test_BCP_16_replaying_a_code_revokes_what_it_issued(rp, browser, client, delay):
    """After a replay, the access and refresh tokens of the first redemption are dead."""
    callback, verifier = code_for(browser, rp)
    first = redeem(client, rp, callback["code"], verifier)
    assert first.status_code == 200
    tokens = first.json
    assert userinfo_status(client, tokens["access_token"]) == 200
    assert introspect(client, rp, tokens["access_token"])["active"] is True
    with time_machine.travel(time.time() + delay, tick=True):
        assert redeem(client, rp, callback["code"], verifier).status_code == 400
        assert_dead(client, rp, tokens)


def test_BCP_16_replay_revokes_the_refreshed_descendants_too(rp, browser, client):
    """Tokens refreshed from the first redemption belong to its family and die with it."""
    callback, verifier = code_for(browser, rp)
    tokens = redeem(client, rp, callback["code"], verifier).json
    refreshed = refresh(client, rp, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.json
    assert redeem(client, rp, callback["code"], verifier).status_code == 400
    assert_dead(client, rp, refreshed.json)


def test_BCP_16_replay_leaves_other_grants_alone(rp, browser, client):
    """Only the replayed code's family is revoked; another grant of the same user lives."""
    callback, verifier = code_for(browser, rp)
    other_callback, other_verifier = code_for(browser, rp)
    tokens = redeem(client, rp, callback["code"], verifier).json
    other = redeem(client, rp, other_callback["code"], other_verifier).json
    assert redeem(client, rp, callback["code"], verifier).status_code == 400
    assert_dead(client, rp, tokens)
    assert userinfo_status(client, other["access_token"]) == 200
    assert refresh(client, rp, other["refresh_token"]).status_code == 200


# BCP-17 ---------------------------------------------------------------------------------


def test_BCP_17_twenty_parallel_redemptions_yield_exactly_one_token(app, rp, browser, client):
    """Of 20 concurrent redemptions of one code exactly one succeeds; the replays then
    revoke what it got."""
    callback, verifier = code_for(browser, rp)
    responses = race(app, 20, lambda c: redeem(c, rp, callback["code"], verifier))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 19, statuses
    assert {r.json["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    winner = next(r.json for r in responses if r.status_code == 200)
    assert_dead(client, rp, winner)


# BCP-18 ---------------------------------------------------------------------------------


def test_BCP_18_another_confidential_client_cannot_redeem_the_code(
    rp, browser, client, make_client
):
    """Client B, authenticating as itself, gets invalid_grant for client A's code."""
    other = make_client()
    callback, verifier = code_for(browser, rp)
    response = redeem(client, other, callback["code"], verifier)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert "access_token" not in response.json


def test_BCP_18_a_public_client_cannot_redeem_a_confidential_clients_code(
    rp, browser, client, make_client
):
    """A public client naming itself gets invalid_grant; naming A without A's secret,
    invalid_client."""
    public = make_client(auth_method="none")
    callback, verifier = code_for(browser, rp)
    data = {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
    }
    as_public = client.post("/oauth/token", data={**data, "client_id": public.client_id})
    assert as_public.status_code == 400
    assert as_public.json["error"] == "invalid_grant"
    as_owner = client.post("/oauth/token", data={**data, "client_id": rp.client_id})
    assert as_owner.status_code == 401
    assert as_owner.json["error"] == "invalid_client"


# BCP-19 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        None,
        "",
        "https://rp.example.org/other",
        "https://rp.example.org/cb/",
        "https://evil.test/cb",
    ],
    ids=["omitted", "empty", "other-registered", "trailing-slash", "foreign"],
)
def test_BCP_19_token_request_must_repeat_the_redirect_uri(browser, client, make_client, sent):
    """A redirect_uri differing from (or missing against) the authorization request fails."""
    rp = make_client(
        first_party=True,
        redirect_uris=["https://rp.example.org/cb", "https://rp.example.org/other"],
    )
    callback, verifier = code_for(browser, rp)
    data = {
        "grant_type": "authorization_code",
        "code": callback["code"],
        "code_verifier": verifier,
    }
    if sent is not None:
        data["redirect_uri"] = sent
    response = token_request(client, rp, **data)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


# BCP-20 ---------------------------------------------------------------------------------


def test_BCP_20_an_expired_code_is_invalid_grant(app, rp, browser, client):
    """A code redeemed after its lifetime fails."""
    lifetime = app.extensions["identity"].settings.authorization_code_lifetime
    callback, verifier = code_for(browser, rp)
    with time_machine.travel(time.time() + lifetime + 1, tick=True):
        response = redeem(client, rp, callback["code"], verifier)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_BCP_20_a_code_just_inside_its_lifetime_works(app, rp, browser, client):
    """The control case: a code redeemed shortly before it expires still works."""
    lifetime = app.extensions["identity"].settings.authorization_code_lifetime
    callback, verifier = code_for(browser, rp)
    with time_machine.travel(time.time() + lifetime - 5, tick=True):
        response = redeem(client, rp, callback["code"], verifier)
    assert response.status_code == 200, response.json


def test_BCP_20_code_lifetime_is_at_most_ten_minutes():
    """The default is one minute and the setting refuses more than ten."""
    from pydantic import ValidationError

    from identity.settings import Settings

    assert Settings.model_fields["authorization_code_lifetime"].default <= 60
    with pytest.raises(ValidationError):
        Settings(authorization_code_lifetime=601)
    assert Settings(authorization_code_lifetime=600).authorization_code_lifetime == 600


def test_BCP_17_twenty_parallel_device_code_polls_yield_exactly_one_token(
    app, make_client, browser
):
    """The device code is a one-time credential too: after approval, of 20 concurrent
    token requests exactly one gets tokens."""
    from tests.conftest import csrf_token

    device = make_client(grant_types=["urn:ietf:params:oauth:grant-type:device_code"])
    started = browser.post(
        "/oauth/device_authorization", data={"scope": "openid"}, headers=device.basic_auth()
    ).json
    page = browser.get("/device")
    confirm = browser.post(
        "/device", data={"csrf_token": csrf_token(page.data), "user_code": started["user_code"]}
    )
    approved = browser.post(
        "/device/confirm",
        data={
            "csrf_token": csrf_token(confirm.data),
            "user_code": started["user_code"],
            "decision": "allow",
        },
    )
    assert approved.status_code == 200
    data = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": started["device_code"],
    }
    responses = race(app, 20, lambda c: token_request(c, device, **data))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 19, [r.json for r in responses]
    assert {r.json["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
