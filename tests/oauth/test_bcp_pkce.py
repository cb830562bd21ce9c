"""RFC 9700 section 2.1.1 / RFC 7636: PKCE with S256 only, required, and checked strictly
(BCP-08 .. BCP-13)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import pytest

from tests.oauth.bcp_support import (
    codes_minted,
    install_keys,
    issuer,
    query,
    redeem,
    signed_in_browser,
)
from tests.oauth.conftest import REDIRECT_URI, pkce_pair


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(browser, rp, **params):
    values = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": "pkce-state",
        **params,
    }
    return browser.get(
        "/authorize?" + urlencode({k: v for k, v in values.items() if v is not None})
    )


def code_with(browser, rp, **params) -> str:
    response = authorize(browser, rp, **params)
    assert response.status_code == 302, response.data
    callback = query(response.headers["Location"])
    assert "code" in callback, callback
    return callback["code"][0]


def redirected_error(app, response) -> str:
    assert response.status_code == 302, response.data
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query(location)
    assert params["state"] == ["pkce-state"]
    assert params["iss"] == [issuer(app)]
    return params["error"][0]


def public_redeem(client, rp, code, verifier=None, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "client_id": rp.client_id,
        "code_verifier": verifier,
        **extra,
    }
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})


# BCP-08 ---------------------------------------------------------------------------------


def test_BCP_08_s256_flow_succeeds_and_is_advertised(app, make_client, user, client):
    """A code flow with an S256 challenge works, and discovery lists S256 (only)."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    verifier, challenge = pkce_pair()
    code = code_with(browser, rp, code_challenge=challenge, code_challenge_method="S256")
    response = redeem(client, rp, code, verifier)
    assert response.status_code == 200, response.json
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert client.get(path).json["code_challenge_methods_supported"] == ["S256"]


def test_BCP_08_public_client_s256_flow_succeeds(app, make_client, user, client):
    """A public client redeems its code with the verifier and no secret."""
    rp = make_client(first_party=True, auth_method="none")
    verifier, challenge = pkce_pair()
    code = code_with(
        signed_in_browser(app), rp, code_challenge=challenge, code_challenge_method="S256"
    )
    response = public_redeem(client, rp, code, verifier)
    assert response.status_code == 200, response.json


# BCP-09 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "none"])
@pytest.mark.parametrize("case", ["missing", "wrong", "other_flow", "challenge_itself", "empty"])
def test_BCP_09_token_request_without_the_right_verifier_is_invalid_grant(
    app, make_client, user, client, case, auth_method
):
    """A code bound to a challenge needs exactly its verifier: anything else is invalid_grant."""
    rp = make_client(first_party=True, auth_method=auth_method)
    browser = signed_in_browser(app)
    _, challenge = pkce_pair()
    other_verifier, other_challenge = pkce_pair()
    code_with(browser, rp, code_challenge=other_challenge, code_challenge_method="S256")
    code = code_with(browser, rp, code_challenge=challenge, code_challenge_method="S256")
    sent = {
        "missing": None,
        "wrong": pkce_pair()[0],
        "other_flow": other_verifier,
        "challenge_itself": challenge,
        "empty": "",
    }[case]
    if auth_method == "none":
        response = public_redeem(client, rp, code, sent)
    else:
        response = redeem(client, rp, code, sent)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_grant"
    assert "access_token" not in response.json


def test_BCP_09_a_failed_verifier_does_not_spend_the_code(app, make_client, user, client):
    """A wrong verifier is refused without spending the code: whoever raced the client with
    a stolen code cannot make the client's own redemption fail; the code still redeems once."""
    rp = make_client(first_party=True)
    verifier, challenge = pkce_pair()
    code = code_with(
        signed_in_browser(app), rp, code_challenge=challenge, code_challenge_method="S256"
    )
    wrong = redeem(client, rp, code, pkce_pair()[0])
    assert wrong.status_code == 400
    assert wrong.json["error"] == "invalid_grant"
    right = redeem(client, rp, code, verifier)
    assert right.status_code == 200, right.json
    again = redeem(client, rp, code, verifier)
    assert again.json["error"] == "invalid_grant"


# BCP-10 ---------------------------------------------------------------------------------


def test_BCP_10_verifier_without_a_challenge_is_refused(app_factory, make_client, user):
    """PKCE downgrade: a code issued without a challenge cannot be redeemed with a verifier."""
    relaxed = app_factory(require_pkce=False)
    rp = make_client(first_party=True)
    browser = signed_in_browser(relaxed)
    code = code_with(browser, rp)  # a confidential client may skip PKCE here
    response = redeem(browser, rp, code, pkce_pair()[0])
    assert response.status_code == 400, response.json
    assert response.json["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in response.json


def test_BCP_10_control_code_without_challenge_redeems_without_verifier(
    app_factory, make_client, user
):
    """The control case: with require_pkce off a confidential client may omit both."""
    relaxed = app_factory(require_pkce=False)
    rp = make_client(first_party=True)
    browser = signed_in_browser(relaxed)
    code = code_with(browser, rp)
    response = redeem(browser, rp, code, None)
    assert response.status_code == 200, response.json


# BCP-11 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("require_pkce", [True, False])
def test_BCP_11_public_clients_must_send_a_challenge(app_factory, make_client, user, require_pkce):
    """A public client without code_challenge gets invalid_request, whatever the setting."""
    server = app_factory(require_pkce=require_pkce)
    rp = make_client(first_party=True, auth_method="none")
    response = authorize(signed_in_browser(server), rp)
    assert redirected_error(server, response) == "invalid_request"
    assert codes_minted(server) == 0


def test_BCP_11_by_default_every_client_must_send_a_challenge(app, make_client, user):
    """require_pkce (on by default) asks a challenge of confidential clients too."""
    assert app.extensions["identity"].settings.require_pkce is True
    rp = make_client(first_party=True)
    response = authorize(signed_in_browser(app), rp)
    assert redirected_error(app, response) == "invalid_request"
    assert codes_minted(app) == 0


def test_BCP_11_pushed_requests_need_a_challenge_too(app, make_client):
    """A pushed authorization request without a challenge is refused at the PAR endpoint."""
    rp = make_client()
    response = app.test_client().post(
        "/oauth/par",
        data={"response_type": "code", "redirect_uri": rp.redirect_uri, "scope": "openid"},
        headers=rp.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


# BCP-12 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge_method": "s256"},
        {"code_challenge_method": "S384"},
        {"code_challenge_method": ""},
    ],
    ids=["plain", "no-method", "lowercase", "unknown", "empty"],
)
def test_BCP_12_only_s256_is_accepted(app, make_client, user, params):
    """plain, a missing method (RFC 7636 defaults it to plain) and any other name fail."""
    rp = make_client(first_party=True)
    verifier = pkce_pair()[0]
    challenge = verifier if params["code_challenge_method"] == "plain" else s256(verifier)
    response = authorize(signed_in_browser(app), rp, code_challenge=challenge, **params)
    assert redirected_error(app, response) == "invalid_request"
    assert codes_minted(app) == 0


def test_BCP_12_method_without_challenge_is_refused(app_factory, make_client, user):
    """code_challenge_method alone is an error even where PKCE is optional."""
    relaxed = app_factory(require_pkce=False)
    rp = make_client(first_party=True)
    response = authorize(signed_in_browser(relaxed), rp, code_challenge_method="S256")
    assert redirected_error(relaxed, response) == "invalid_request"


def test_BCP_12_plain_is_refused_at_the_par_endpoint(app, make_client):
    """PAR applies the same S256-only rule."""
    rp = make_client()
    verifier = pkce_pair()[0]
    response = app.test_client().post(
        "/oauth/par",
        data={
            "response_type": "code",
            "redirect_uri": rp.redirect_uri,
            "scope": "openid",
            "code_challenge": verifier,
            "code_challenge_method": "plain",
        },
        headers=rp.basic_auth(),
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


# BCP-13 (P2) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "challenge",
    ["A" * 42, "A" * 44, "A" * 128, "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "/", ""],
    ids=["42", "44", "128", "padded", "plus", "slash", "empty"],
)
def test_BCP_13_malformed_s256_challenges_are_refused(app, make_client, user, challenge):
    """An S256 challenge is exactly 43 base64url characters (RFC 7636 section 4.2)."""
    rp = make_client(first_party=True)
    response = authorize(
        signed_in_browser(app), rp, code_challenge=challenge, code_challenge_method="S256"
    )
    assert redirected_error(app, response) == "invalid_request"
    assert codes_minted(app) == 0


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " ", "a" * 42 + "+", "ä" * 43],
    ids=["42", "129", "bang", "space", "plus", "non-ascii"],
)
def test_BCP_13_malformed_verifiers_are_refused(app, make_client, user, client, verifier):
    """Verifiers outside 43-128 unreserved characters fail even if their hash matches."""
    rp = make_client(first_party=True)
    challenge = s256(verifier)
    code = code_with(
        signed_in_browser(app), rp, code_challenge=challenge, code_challenge_method="S256"
    )
    response = redeem(client, rp, code, verifier)
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_grant", "invalid_request")


# BCP-14 (P2) ----------------------------------------------------------------------------


def test_BCP_14_a_constant_challenge_is_no_replay_protection(app, make_client, user, client):
    """Codes requested with the same challenge and nonce are still each single-use: the
    server never treats a repeated challenge as binding one code to one flow."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    verifier, challenge = pkce_pair()
    codes = [
        code_with(browser, rp, code_challenge=challenge, code_challenge_method="S256", nonce="same")
        for _ in range(5)
    ]
    assert len(set(codes)) == 5
    for code in codes:
        assert redeem(client, rp, code, verifier).status_code == 200
        assert redeem(client, rp, code, verifier).json["error"] == "invalid_grant"
