"""TOK-14: the user withdraws an app's access from the account pages."""

from __future__ import annotations

from tests.conftest import csrf_token
from tests.oauth.conftest import token_request


def _tokens(flow, rp, client):
    params, verifier = flow.authorize(rp)
    return token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json


def test_TOK_14_withdrawing_consent_kills_refresh_and_access_tokens(flow, rp, client):
    """After "Withdraw access" the app's refresh token and access token are refused."""
    tokens = _tokens(flow, rp, client)
    page = client.get("/account/apps")
    assert page.status_code == 200 and b"Relying Party" in page.data
    response = client.post(
        "/account/apps/withdraw",
        data={"csrf_token": csrf_token(page.data), "client_id": rp.client_id},
    )
    assert response.status_code == 303
    assert b"No app has access" in client.get("/account/apps").data
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    refreshed = token_request(
        client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.json["error"] == "invalid_grant"


def test_withdrawn_app_asks_for_consent_again(flow, rp, client):
    """The next authorization shows the consent page again instead of passing silently."""
    _tokens(flow, rp, client)
    page = client.get("/account/apps")
    client.post(
        "/account/apps/withdraw",
        data={"csrf_token": csrf_token(page.data), "client_id": rp.client_id},
    )
    from tests.oauth.conftest import authorize_url, pkce_pair

    response = client.get(authorize_url(rp, pkce_pair()[1]))
    assert response.status_code == 200 and b'action="/authorize/consent"' in response.data


def test_withdraw_needs_csrf_and_own_consent(flow, rp, client, make_client):
    """A cross-site POST is refused, and an app the user never allowed cannot be "withdrawn"."""
    _tokens(flow, rp, client)
    assert (
        client.post("/account/apps/withdraw", data={"client_id": rp.client_id}).status_code == 400
    )
    other = make_client("Other")
    page = client.get("/account/apps")
    response = client.post(
        "/account/apps/withdraw",
        data={"csrf_token": csrf_token(page.data), "client_id": other.client_id},
        follow_redirects=True,
    )
    assert b"no access to withdraw" in response.data
    assert b"Relying Party" in client.get("/account/apps").data


def test_apps_page_needs_sign_in(client):
    """Signed-out visitors are sent to sign in."""
    response = client.get("/account/apps")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_connected_apps_lists_scopes_like_the_consent_page(make_client, user, client):
    """The connected-apps page lists an app's scopes in the consent page's order and words,
    whatever order the request named them in."""
    import re

    from tests.conftest import sign_in
    from tests.oauth.conftest import Flow, authorize_url, pkce_pair

    rp = make_client(scope="openid profile email offline_access roles")
    sign_in(client)
    scope = "email roles openid offline_access profile"
    consent = client.get(authorize_url(rp, pkce_pair()[1], scope=scope, prompt="consent"))
    assert consent.status_code == 200

    def listed(html: bytes) -> list[str]:
        found = re.search(rb'<ul class="scopes">(.*?)</ul>', html, re.S)
        assert found, html
        return re.findall(r"<li>([^<]+)</li>", found.group(1).decode())

    on_consent = listed(consent.data)
    assert on_consent == [
        "Sign you in with your identity account",
        "See your name",
        "See your email address",
        "Stay connected when you are not using the app",
        "See the roles you have",
    ]
    Flow(client).follow_to_client(consent)
    assert listed(client.get("/account/apps").data) == on_consent


def test_connected_apps_say_when_each_app_was_last_used(flow, rp, client):
    """Last used: the latest authorization, or the latest refresh if that came later."""
    import re
    from datetime import UTC, datetime, timedelta

    import time_machine

    first = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    with time_machine.travel(first, tick=False):
        tokens = _tokens(flow, rp, client)
        page = client.get("/account/apps").text
    assert re.search(r'data-testid="last-used">' + first.strftime("%Y-%m-%d %H:%M"), page)
    later = first + timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        refreshed = token_request(
            client, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert refreshed.status_code == 200
        page = client.get("/account/apps").text
    assert re.search(r'data-testid="last-used">' + later.strftime("%Y-%m-%d %H:%M"), page)
