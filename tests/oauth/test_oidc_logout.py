"""OpenID Foundation RP-initiated logout plan (OIDC-60..69) and forced-logout protection
(TOK-17): OpenID Connect RP-Initiated Logout 1.0 sections 2-4."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import csrf_token
from tests.oauth.conftest import (
    ModeFlow,
    callback,
    forge,
    token_request,
    unverified,
)

pytestmark = pytest.mark.usefixtures("fast_keys")
LOGGED_OUT = "https://rp.example.org/logged-out"


@pytest.fixture
def rp(make_client: Any) -> Any:
    return make_client(post_logout_redirect_uris=[LOGGED_OUT])


@pytest.fixture
def tokens(client: Any, user: Any, rp: Any) -> dict[str, Any]:
    """Alice signed in through the client; the token response (ID token and refresh token)."""
    return ModeFlow(client, "query").tokens(rp, scope="openid profile")


def logout(client: Any, method: str = "GET", **params: str) -> Any:
    if method == "POST":
        return client.post("/logout", data=params)
    return client.get("/logout" + ("?" + urlencode(params) if params else ""))


def signed_in(client: Any) -> bool:
    response = client.get("/account")
    return response.status_code == 200


def session_ended(client: Any, rp: Any) -> bool:
    """The OP session is gone: prompt=none answers login_required (OIDCCRpInitiatedLogout)."""
    response, _ = ModeFlow(client, "query").start(rp, prompt="none")
    return callback(response, rp.redirect_uri).get("error") == "login_required"


def no_redirect(response: Any) -> bool:
    return response.status_code in (200, 400) and "Location" not in response.headers


def confirm(client: Any, page: Any) -> Any:
    return client.post("/logout/confirm", data={"csrf_token": csrf_token(page.data)})


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_OIDC_60_logout_redirects_with_state_and_ends_the_session(client, rp, tokens, method):
    """oidcc-rp-initiated-logout: a valid hint and registered URI redirect there with state, and
    prompt=none then fails."""
    response = logout(
        client,
        method,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=LOGGED_OUT,
        state="bye-1",
    )
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == LOGGED_OUT + "?state=bye-1"
    assert not signed_in(client)
    assert session_ended(client, rp)


def test_OIDC_60_logout_ends_the_grants_of_the_session(client, rp, tokens):
    """Refresh tokens tied to the ended session stop working and its access token is revoked."""
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
    assert response.status_code in (302, 303)
    refresh = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.status_code == 400 and refresh.json["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401


def test_OIDC_61_unregistered_post_logout_redirect_uri_is_not_followed(client, rp, tokens):
    """oidcc-rp-initiated-logout-bad-post-logout-redirect-uri: no redirect to an unregistered
    URI."""
    response = logout(
        client,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri="https://attacker.example.net/logged-out",
        state="s",
    )
    assert no_redirect(response)
    assert b"attacker.example.net" not in response.data


def test_OIDC_61_another_clients_logout_uri_is_not_followed(client, rp, tokens, make_client):
    """A URI registered by a different client is not accepted with this client's hint."""
    make_client("Other", post_logout_redirect_uris=["https://other.example.net/bye"])
    response = logout(
        client,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri="https://other.example.net/bye",
    )
    assert no_redirect(response)


def test_OIDC_62_hint_reencoded_with_alg_none_is_refused(client, rp, tokens):
    """oidcc-rp-initiated-logout-modified-id-token-hint: an alg=none copy of the hint gets an error
    page, no redirect, and the session stays."""
    header, claims = unverified(tokens["id_token"])
    for alg in ("none", "None", "NONE"):
        modified = forge({**header, "alg": alg}, claims)
        response = logout(
            client, id_token_hint=modified, post_logout_redirect_uri=LOGGED_OUT, state="s"
        )
        assert response.status_code == 400 and "Location" not in response.headers, alg
    assert signed_in(client)


def test_OIDC_63_no_id_token_hint_asks_for_confirmation(client, rp, tokens):
    """oidcc-rp-initiated-logout-no-id-token-hint: without a hint there is a confirmation page and
    no redirect, even once confirmed."""
    page = logout(client, post_logout_redirect_uri=LOGGED_OUT, client_id=rp.client_id, state="s")
    assert no_redirect(page)
    assert b'action="/logout/confirm"' in page.data
    assert signed_in(client)
    done = confirm(client, page)
    assert no_redirect(done)
    assert not signed_in(client)


def test_OIDC_64_no_params_logs_out_after_confirmation(client, rp, tokens):
    """oidcc-rp-initiated-logout-no-params: the user confirms and is shown the signed-out page."""
    page = logout(client)
    assert no_redirect(page) and b'action="/logout/confirm"' in page.data
    done = confirm(client, page)
    assert done.status_code == 200 and b"signed out" in done.data
    assert session_ended(client, rp)


def test_OIDC_65_only_id_token_hint_logs_out_to_our_page(client, rp, tokens):
    """oidcc-rp-initiated-logout-no-post-logout-redirect-uri: a hint alone logs out and shows our
    signed-out page."""
    response = logout(client, id_token_hint=tokens["id_token"])
    assert response.status_code == 200 and "Location" not in response.headers
    assert b"signed out" in response.data
    assert session_ended(client, rp)


def test_OIDC_66_no_state_redirects_without_state(client, rp, tokens):
    """oidcc-rp-initiated-logout-no-state: the redirect goes to the registered URI exactly, with
    no state added."""
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == LOGGED_OUT
    assert session_ended(client, rp)


def test_OIDC_67_only_state_asks_for_confirmation_and_never_redirects(client, rp, tokens):
    """oidcc-rp-initiated-logout-only-state: state alone leads to confirmation and our own page."""
    page = logout(client, state="only")
    assert no_redirect(page)
    done = confirm(client, page)
    assert no_redirect(done) and b"only" not in done.data
    assert session_ended(client, rp)


def test_OIDC_68_query_added_to_registered_uri_is_not_followed(client, rp, tokens):
    """oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri: ?foo=bar makes the URI
    unregistered."""
    for uri in (LOGGED_OUT + "?foo=bar", LOGGED_OUT + "/", LOGGED_OUT.upper(), LOGGED_OUT + "#x"):
        response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=uri)
        assert no_redirect(response), uri


def test_OIDC_69_hint_signed_by_a_foreign_key_is_refused(client, rp, tokens):
    """oidcc-rp-initiated-logout-bad-id-token-hint: a hint signed by another key (foreign kid or
    our kid) gets an error page, no redirect."""
    from joserfc.jwk import ECKey

    header, claims = unverified(tokens["id_token"])
    foreign = ECKey.generate_key("P-256")
    for kid in (foreign.thumbprint(), header["kid"]):
        token = forge({**header, "alg": "ES256", "kid": kid}, claims, foreign)
        response = logout(
            client, id_token_hint=token, post_logout_redirect_uri=LOGGED_OUT, state="s"
        )
        assert response.status_code == 400 and "Location" not in response.headers
    assert signed_in(client)


def test_OIDC_69_hint_issued_to_another_client_than_client_id_is_refused(
    client, rp, tokens, make_client
):
    """A hint whose aud is not the client_id sent with it is an error, never a redirect."""
    other = make_client("Other", post_logout_redirect_uris=["https://other.example.net/bye"])
    response = logout(
        client,
        id_token_hint=tokens["id_token"],
        client_id=other.client_id,
        post_logout_redirect_uri="https://other.example.net/bye",
    )
    assert no_redirect(response)
    assert signed_in(client)


def test_TOK_17_cross_site_logout_without_hint_needs_confirmation(client, rp, tokens):
    """A cross-site GET to end_session without a hint only shows a confirmation page; the session
    survives."""
    response = client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200 and b'action="/logout/confirm"' in response.data
    assert signed_in(client)


def test_TOK_17_confirmation_needs_the_csrf_token(client, rp, tokens):
    """A forged POST to the confirmation endpoint without the form's CSRF token logs no one out."""
    response = client.post("/logout/confirm", data={})
    assert response.status_code in (302, 303, 400)
    assert signed_in(client)


def test_TOK_17_hint_of_another_user_needs_confirmation(client, rp, tokens, make_user):
    """A genuine hint for someone else than the signed-in user does not log the user out
    silently."""
    from tests.conftest import PASSWORD, form_post

    make_user("bob@example.org")
    bob = {"email": "bob@example.org", "password": PASSWORD}
    assert form_post(client, "/sign-in?force=1", bob).status_code == 303
    response = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
    assert no_redirect(response) and b'action="/logout/confirm"' in response.data
    assert signed_in(client)


def test_OIDC_60_logout_without_a_session_still_redirects_with_a_valid_hint(app, rp, tokens):
    """A browser with no OP session (already signed out) is still sent back to the registered
    URI."""
    fresh = app.test_client()
    response = logout(
        fresh, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT, state="x"
    )
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == LOGGED_OUT + "?state=x"
