"""Step-up: a relying party asks for two factors (acr_values, or an essential acr claim)
and the ID token, access token and introspection say what the sign-in really reached."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from flask.testing import FlaskClient

from tests.conftest import csrf_token, sign_in
from tests.functional.test_mfa import clock, enrol
from tests.oauth.conftest import (
    RegisteredClient,
    authorize_url,
    callback_params,
    pkce_pair,
    redeem,
    unverified,
)

TWO_FACTORS = "urn:identity:loa:2fa"
ONE_FACTOR = "urn:identity:loa:1fa"


@pytest.fixture
def first_party(make_client: Any) -> RegisteredClient:
    return make_client(first_party=True)  # no consent page: the steps under test only


__all__ = ["clock"]  # the frozen clock of the MFA tests, used here too (autouse)


@pytest.fixture
def totp_user(client: FlaskClient, user: Any, clock: Any) -> pyotp.TOTP:
    """Alice, signed in with her password only, who then sets up an authenticator app."""
    assert sign_in(client).status_code == 303
    totp, _ = enrol(client)
    clock.shift(timedelta(seconds=30))  # the enrolment's code is spent: the next step's
    return totp


def start(client: FlaskClient, rp: RegisteredClient, **params: str) -> tuple[Any, str]:
    verifier, challenge = pkce_pair()
    return client.get(authorize_url(rp, challenge, **params)), verifier


def follow(client: FlaskClient, response: Any) -> Any:
    """Local redirects, until the answer leaves for the client or shows a page."""
    while response.status_code in (302, 303) and response.location.startswith("/"):
        response = client.get(response.location)
    return response


def tokens(client: FlaskClient, rp: RegisteredClient, response: Any, verifier: str) -> Any:
    params = callback_params(response.location)
    assert "code" in params, params
    answer = redeem(client, rp, params["code"], verifier)
    assert answer.status_code == 200, answer.json
    return answer.json


def test_AUTH_28_acr_values_for_two_factors_asks_the_second_factor(
    client: FlaskClient, first_party: RegisteredClient, totp_user: pyotp.TOTP
) -> None:
    response, verifier = start(client, first_party, acr_values=TWO_FACTORS)
    page = follow(client, response)
    assert page.status_code == 200 and b"Enter your code" in page.data
    next_url = parse_qs(urlsplit(page.request.url).query)["next"][0]
    assert next_url.startswith("/authorize/resume/")
    # The second step's page may end at the client (its CSP allows that form target).
    assert first_party.redirect_uri.split("/cb")[0] in page.headers["Content-Security-Policy"]
    code = totp_user.now()
    answered = client.post(
        "/sign-in/second-factor",
        data={"csrf_token": csrf_token(page.data), "code": code, "next": next_url},
    )
    body = tokens(client, first_party, follow(client, answered), verifier)
    _, id_token = unverified(body["id_token"])
    assert id_token["acr"] == TWO_FACTORS
    assert id_token["amr"] == ["pwd", "otp"]
    _, access = unverified(body["access_token"])
    assert access["amr"] == ["pwd", "otp"]
    introspected = client.post(
        "/oauth/introspect", data={"token": body["access_token"]}, headers=first_party.basic_auth()
    ).json
    assert introspected["acr"] == TWO_FACTORS and introspected["amr"] == ["pwd", "otp"]


def test_AUTH_28_without_acr_values_one_factor_is_reported_as_such(
    client: FlaskClient, first_party: RegisteredClient, totp_user: pyotp.TOTP
) -> None:
    response, verifier = start(client, first_party)
    body = tokens(client, first_party, follow(client, response), verifier)
    _, id_token = unverified(body["id_token"])
    assert (id_token["acr"], id_token["amr"]) == (ONE_FACTOR, ["pwd"])


def test_AUTH_29_essential_acr_unmet_answers_the_error(
    client: FlaskClient, first_party: RegisteredClient, user: Any
) -> None:
    sign_in(client)  # no second factor set up
    claims = {"id_token": {"acr": {"essential": True, "values": [TWO_FACTORS]}}}
    response, _ = start(client, first_party, claims=json.dumps(claims))
    response = follow(client, response)
    params = callback_params(response.location)
    assert params["error"] == "unmet_authentication_requirements"
    assert params["state"] == "state-123"


def test_AUTH_29_voluntary_acr_unmet_goes_on_with_what_was_reached(
    client: FlaskClient, first_party: RegisteredClient, user: Any
) -> None:
    sign_in(client)
    response, verifier = start(client, first_party, acr_values=TWO_FACTORS)
    body = tokens(client, first_party, follow(client, response), verifier)
    _, id_token = unverified(body["id_token"])
    assert id_token["acr"] == ONE_FACTOR


def test_AUTH_29_an_unknown_essential_acr_is_unmet(
    client: FlaskClient, first_party: RegisteredClient, user: Any
) -> None:
    sign_in(client)
    claims = {"id_token": {"acr": {"essential": True, "value": "urn:example:loa:4"}}}
    response, _ = start(client, first_party, claims=json.dumps(claims))
    assert callback_params(follow(client, response).location)["error"] == (
        "unmet_authentication_requirements"
    )


def test_AUTH_28_prompt_none_cannot_step_up(
    client: FlaskClient, first_party: RegisteredClient, totp_user: pyotp.TOTP
) -> None:
    response, _ = start(client, first_party, acr_values=TWO_FACTORS, prompt="none")
    assert callback_params(follow(client, response).location)["error"] == "interaction_required"


def test_discovery_lists_both_acrs(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").json
    assert metadata["acr_values_supported"] == [ONE_FACTOR, TWO_FACTORS]


def test_AUTH_32_a_client_requiring_two_factors_leads_a_user_without_one_through_set_up(
    client: FlaskClient, make_client: Any, user: Any
) -> None:
    """default_acr_values is the client's floor: a password-only user is asked to set up
    an authenticator app before the code is issued, and the token then says two factors."""
    rp = make_client(first_party=True, default_acr_values=[TWO_FACTORS])
    sign_in(client)
    response, verifier = start(client, rp, acr_values=ONE_FACTOR)  # asking less changes nothing
    page = follow(client, response)
    assert page.status_code == 200 and b"Set up an authenticator app" in page.data
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret
    done = client.post(
        "/sign-in/set-up-authenticator",
        data={
            "csrf_token": csrf_token(page.data),
            "code": pyotp.TOTP(secret.group(1).replace(" ", "")).now(),
        },
    )
    next_url = re.search(r'href="(/authorize/resume/[^"]+)"', done.text)
    assert next_url, done.text
    body = tokens(client, rp, follow(client, client.get(next_url.group(1))), verifier)
    _, id_token = unverified(body["id_token"])
    assert (id_token["acr"], id_token["amr"]) == (TWO_FACTORS, ["pwd", "otp"])


def test_AUTH_32_default_acr_values_must_be_known(make_client: Any) -> None:
    from identity.oauth.clients.metadata import InvalidClientMetadata

    with pytest.raises(InvalidClientMetadata):
        make_client(default_acr_values=["urn:example:gold"])
