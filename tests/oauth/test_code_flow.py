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
