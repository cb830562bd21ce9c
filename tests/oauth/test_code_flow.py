"""The authorization code flow end to end through the test client."""

from __future__ import annotations

from tests.oauth.conftest import token_request


def test_OIDC_01_code_flow_issues_verifiable_tokens(app, flow, rp, client):
    """Sign-in, consent, code, tokens: the ID token names the user, nonce and issuer."""
    params, verifier = flow.authorize(rp)
    assert params["state"] == "state-123"
    assert params["iss"] == app.extensions["identity"].settings.issuer
    response = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer"
    assert {"access_token", "id_token", "refresh_token"} <= body.keys()
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200, userinfo.json
    assert userinfo.json["email"] == "alice@example.org"


def _sign_in_page_for(client, rp):
    from tests.oauth.conftest import authorize_url, pkce_pair

    response = client.get(authorize_url(rp, pkce_pair()[1]))
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    return response.headers["Location"], client.get(response.headers["Location"])


def test_sign_in_page_names_the_app_that_asked(make_client, client, user):
    """Sign-in that continues an authorization request says "to continue to" the client's
    display name (escaped), also after a failed attempt; a plain sign-in names no app."""
    from urllib.parse import parse_qs, urlsplit

    from tests.conftest import csrf_token

    rp = make_client('Wiki <b>"&"</b>')
    location, page = _sign_in_page_for(client, rp)
    expected = "to continue to <strong>Wiki &lt;b&gt;&#34;&amp;&#34;&lt;/b&gt;</strong>"
    assert expected in page.data.decode()
    next_value = parse_qs(urlsplit(location).query)["next"][0]
    failed = client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_token(page.data),
            "email": "alice@example.org",
            "password": "not the password",
            "next": next_value,
        },
    )
    assert failed.status_code == 200 and expected in failed.data.decode()
    assert "to continue to" not in client.get("/sign-in").data.decode()
    unknown = client.get("/sign-in?next=/authorize/resume/no-such-request").data.decode()
    assert "to continue to" not in unknown


def test_sign_in_page_names_a_nameless_client_by_its_host(make_client, client, user):
    """A self-registered client without a name is named by its redirect URI's host, as
    on the consent page."""
    rp = make_client(
        "", redirect_uris=["https://nameless.example.com/cb"], registered_via="dynamic"
    )
    _, page = _sign_in_page_for(client, rp)
    assert "to continue to <strong>nameless.example.com</strong>" in page.data.decode()
