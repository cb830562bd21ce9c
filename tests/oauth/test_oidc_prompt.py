"""OpenID Foundation basic plan: prompt, max_age and id_token_hint modules (OIDC Core
3.1.2.1, 3.1.2.3, 3.1.2.6), in both response modes (OIDC-58)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import time_machine

from tests.oauth.conftest import callback, redeem, unverified

pytestmark = pytest.mark.usefixtures("fast_keys")


def id_token_claims(client: Any, rp: Any, params: dict[str, str], verifier: str) -> dict:
    response = redeem(client, rp, params["code"], verifier)
    assert response.status_code == 200, response.json
    return unverified(response.json["id_token"])[1] | {"_raw": response.json["id_token"]}


def is_sign_in(response: Any) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"].startswith(
        "/sign-in"
    )


def test_OIDC_17_prompt_login_forces_reauthentication(client, mode_flow, rp):
    """oidcc-prompt-login: with a session, prompt=login still shows sign-in and the new auth_time is
    later."""
    params, verifier = mode_flow.authorize(rp)
    first = id_token_claims(client, rp, params, verifier)
    with time_machine.travel(time.time() + 5, tick=True):
        response, verifier = mode_flow.start(rp, prompt="login")
        assert is_sign_in(response)
        params = callback(mode_flow.follow_to_client(response), rp.redirect_uri)
        second = id_token_claims(client, rp, params, verifier)
    assert second["sub"] == first["sub"]
    assert second["auth_time"] > first["auth_time"]


def test_OIDC_17_prompt_login_is_not_satisfied_by_the_old_session(client, mode_flow, rp):
    """Coming back from the sign-in page without signing in again does not issue a code."""
    mode_flow.authorize(rp)
    response, _ = mode_flow.start(rp, prompt="login")
    assert is_sign_in(response)
    location = response.headers["Location"]
    from urllib.parse import parse_qs, urlsplit

    resume = parse_qs(urlsplit(location).query)["next"][0]
    again = client.get(resume)
    assert is_sign_in(again)


def test_OIDC_18_prompt_none_without_session_is_login_required(app, client, mode_flow, rp):
    """oidcc-prompt-none-not-logged-in: error=login_required straight back to the client, with no
    page shown."""
    response, _ = mode_flow.start(rp, prompt="none")
    assert not is_sign_in(response)
    params = callback(response, rp.redirect_uri)
    assert params["error"] == "login_required"
    assert params["state"] == "state-123"
    assert params["iss"] == app.extensions["identity"].settings.issuer
    assert "code" not in params


def test_OIDC_19_prompt_none_with_session_is_silent(client, mode_flow, rp):
    """oidcc-prompt-none-logged-in: with a session and consent, prompt=none answers at once with the
    same sub and auth_time."""
    params, verifier = mode_flow.authorize(rp)
    first = id_token_claims(client, rp, params, verifier)
    response, verifier = mode_flow.start(rp, prompt="none")
    params = callback(response, rp.redirect_uri)
    assert "code" in params, params
    second = id_token_claims(client, rp, params, verifier)
    assert second["sub"] == first["sub"]
    assert second["auth_time"] == first["auth_time"]


def test_OIDC_19_prompt_none_without_consent_is_consent_required(client, mode_flow, make_client):
    """prompt=none for a client the user never consented to answers consent_required, not a consent
    page."""
    known = make_client("Known")
    mode_flow.authorize(known)
    other = make_client("Other")
    response, _ = mode_flow.start(other, prompt="none")
    params = callback(response, other.redirect_uri)
    assert params["error"] == "consent_required"


def test_OIDC_20_max_age_1_forces_reauthentication(client, mode_flow, rp):
    """oidcc-max-age-1: a second request a few seconds later with max_age=1 shows sign-in and
    returns a later auth_time."""
    params, verifier = mode_flow.authorize(rp)
    first = id_token_claims(client, rp, params, verifier)
    with time_machine.travel(time.time() + 3, tick=True):
        response, verifier = mode_flow.start(rp, max_age="1")
        assert is_sign_in(response)
        params = callback(mode_flow.follow_to_client(response), rp.redirect_uri)
        second = id_token_claims(client, rp, params, verifier)
    assert "auth_time" in second
    assert second["auth_time"] > first["auth_time"]


def test_OIDC_20_max_age_with_prompt_none_is_login_required(client, mode_flow, rp):
    """An expired max_age with prompt=none cannot show sign-in, so it answers login_required."""
    mode_flow.authorize(rp)
    with time_machine.travel(time.time() + 3, tick=True):
        response, _ = mode_flow.start(rp, max_age="1", prompt="none")
        assert callback(response, rp.redirect_uri)["error"] == "login_required"


def test_OIDC_21_max_age_10000_does_not_reauthenticate(client, mode_flow, rp):
    """oidcc-max-age-10000: max_age=15000 then max_age=10000 need no new sign-in and return the same
    auth_time."""
    params, verifier = mode_flow.authorize(rp, max_age="15000")
    first = id_token_claims(client, rp, params, verifier)
    assert "auth_time" in first
    response, verifier = mode_flow.start(rp, max_age="10000")
    assert not is_sign_in(response)
    params = callback(response, rp.redirect_uri)
    second = id_token_claims(client, rp, params, verifier)
    assert second["auth_time"] == first["auth_time"]
    assert second["sub"] == first["sub"]


def test_OIDC_21_malformed_max_age_is_invalid_request(client, mode_flow, rp, signed_in):
    """A max_age that is not a non-negative integer is an invalid_request, not a crash or a silent
    default."""
    for value in ("-1", "ten", "1.5"):
        response, _ = mode_flow.start(rp, max_age=value)
        assert callback(response, rp.redirect_uri)["error"] == "invalid_request", value


def test_OIDC_23_id_token_hint_with_prompt_none_is_silent(client, mode_flow, rp):
    """oidcc-id-token-hint: prompt=none with the first ID token as hint succeeds silently for the
    same sub."""
    params, verifier = mode_flow.authorize(rp)
    first = id_token_claims(client, rp, params, verifier)
    response, verifier = mode_flow.start(rp, prompt="none", id_token_hint=first["_raw"])
    params = callback(response, rp.redirect_uri)
    assert "code" in params, params
    second = id_token_claims(client, rp, params, verifier)
    assert second["sub"] == first["sub"]


def test_OIDC_23_id_token_hint_for_another_user_is_login_required(client, mode_flow, rp, make_user):
    """A hint naming someone other than the signed-in user never yields a code silently."""
    from tests.conftest import PASSWORD, form_post

    make_user("bob@example.org")
    params, verifier = mode_flow.authorize(rp)
    alice_hint = id_token_claims(client, rp, params, verifier)["_raw"]
    bob = {"email": "bob@example.org", "password": PASSWORD}
    assert form_post(client, "/sign-in?force=1", bob).status_code == 303
    response, _ = mode_flow.start(rp, prompt="none", id_token_hint=alice_hint)
    params = callback(response, rp.redirect_uri)
    assert params["error"] == "login_required"
    assert "code" not in params


def test_OIDC_23_expired_id_token_hint_is_still_accepted(client, mode_flow, rp):
    """An expired but genuine ID token is a valid hint (OIDC Core 3.1.2.1: the OP need not check
    exp)."""
    params, verifier = mode_flow.authorize(rp)
    hint = id_token_claims(client, rp, params, verifier)["_raw"]
    with time_machine.travel(time.time() + 2 * 3600, tick=True):
        from tests.conftest import sign_in

        assert sign_in(client).status_code == 303
        response, _ = mode_flow.start(rp, prompt="none", id_token_hint=hint)
        assert "code" in callback(response, rp.redirect_uri)
