"""Helpers shared by the RFC 9700 (OAuth 2.0 Security BCP) tests in test_bcp_*.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import csrf_token, sign_in
from tests.oauth.conftest import RegisteredClient, authorize_url, pkce_pair, token_request

EVIL = "https://evil.test/cb"


def issuer(app: Flask) -> str:
    return str(app.extensions["identity"].settings.issuer)


def count(app: Flask, model: Any) -> int:
    """Rows of a model's table (e.g. AuthorizationCode: was a code minted?)."""
    from identity.extensions import db

    with app.app_context():
        return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def codes_minted(app: Flask) -> int:
    from identity.models.oauth import AuthorizationCode

    return count(app, AuthorizationCode)


def query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def not_redirected_to_client(response: Any) -> bool:
    """True when the answer is our own page: no Location leaving this server."""
    location = response.headers.get("Location", "")
    return not location or (location.startswith("/") and not location.startswith("//"))


def signed_in_browser(app: Flask, *, via_form: bool = False) -> FlaskClient:
    """A browser of ``app`` signed in as alice (who must exist). By default the login
    session is started directly, as a password sign-in would (the sign-in form costs an
    argon2 verification per test); ``via_form`` goes through the real form."""
    browser = app.test_client()
    if via_form:
        response = sign_in(browser)
        assert response.status_code == 303, response.data
        return browser
    from identity.auth.methods import acr_for
    from identity.extensions import db
    from identity.models.user import User
    from identity.sessions import cookie_name, policy, service

    settings = app.extensions["identity"].settings
    with app.app_context():
        user = db.session.execute(
            select(User).where(User.email == "alice@example.org")
        ).scalar_one()
        token, _ = service.start(
            db.session, user, policy(settings), amr=["pwd"], acr=acr_for(["pwd"]), ip="127.0.0.1"
        )
        db.session.commit()
    browser.set_cookie(cookie_name(settings), token)
    return browser


def code_for(
    browser: FlaskClient, rp: RegisteredClient, **params: str
) -> tuple[dict[str, str], str]:
    """Authorize a first-party client in a signed-in browser; returns callback params and
    the PKCE verifier."""
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_url(rp, challenge, **params))
    assert response.status_code == 302, response.data
    location = response.headers["Location"]
    assert location.startswith(rp.redirect_uri), location
    return {k: v[0] for k, v in query(location).items()}, verifier


def redeem(
    client: FlaskClient, rp: RegisteredClient, code: str, verifier: str, **extra: str
) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier,
        **extra,
    }
    return token_request(client, rp, **{k: v for k, v in data.items() if v is not None})


def tokens_for(browser: FlaskClient, rp: RegisteredClient, **params: str) -> dict[str, Any]:
    """A full code flow for a first-party client; returns the token response body."""
    callback, verifier = code_for(browser, rp, **params)
    response = redeem(browser, rp, callback["code"], verifier)
    assert response.status_code == 200, response.json
    return dict(response.json)


def refresh(client: FlaskClient, rp: RegisteredClient, refresh_token: str, **extra: str) -> Any:
    return token_request(
        client, rp, grant_type="refresh_token", refresh_token=refresh_token, **extra
    )


def userinfo_status(client: FlaskClient, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def introspect(client: FlaskClient, rp: RegisteredClient, token: str) -> dict[str, Any]:
    response = client.post("/oauth/introspect", data={"token": token}, headers=rp.basic_auth())
    assert response.status_code == 200, response.json
    return dict(response.json)


def assert_dead(client: FlaskClient, rp: RegisteredClient, tokens: dict[str, Any]) -> None:
    """The access and refresh token of a token response no longer work anywhere."""
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert introspect(client, rp, tokens["access_token"])["active"] is False
    assert introspect(client, rp, tokens["refresh_token"])["active"] is False
    response = refresh(client, rp, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def consent_form(page: Any) -> dict[str, str]:
    import re

    match = re.search(rb'name="request_id" type="hidden" value="([^"]+)"', page.data)
    assert match, page.data
    return {"csrf_token": csrf_token(page.data), "request_id": match.group(1).decode()}


def race(app: Flask, n: int, request: Callable[[FlaskClient], Any]) -> list[Any]:
    """Fire ``n`` requests at once, each from its own thread and test client (so each has
    its own app context, session and database connection); returns the responses."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=30)
            results[i] = request(client)
        except BaseException as error:  # noqa: BLE001 - any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


_KEY_CACHE: dict[str, dict[str, Any]] = {}
_IMPORTED: dict[str, Any] = {}


def install_keys(app: Flask, monkeypatch: Any, algs: tuple[str, ...] = ("ES256", "RS256")) -> None:
    """Store signing keys as `identity init` does, but generate (and check) each private key
    only once per test session: RSA key generation and loading dominated these tests."""
    import json

    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.oauth import SigningKey
    from identity.oauth import keys as key_module

    real_import = key_module.import_key

    def cached_import(data: dict[str, Any]) -> Any:
        cache_key = json.dumps(data, sort_keys=True)
        if cache_key not in _IMPORTED:
            _IMPORTED[cache_key] = real_import(data)
        return _IMPORTED[cache_key]

    monkeypatch.setattr(key_module, "import_key", cached_import)
    rt = app.extensions["identity"]
    with app.app_context():
        for alg in algs:
            if alg not in _KEY_CACHE:
                _KEY_CACHE[alg] = key_module.generate_jwk(alg).as_dict(private=True)
            key = cached_import(_KEY_CACHE[alg])
            kid = key.thumbprint()
            db.session.add(
                SigningKey(
                    kid=kid,
                    alg=alg,
                    public_jwk=dict(key.as_dict(private=False), kid=kid, alg=alg, use="sig"),
                    private_jwk_encrypted=rt.keys.cipher.encrypt(_KEY_CACHE[alg]),
                    created_at=utcnow(),
                    active_from=utcnow(),
                )
            )
        db.session.commit()
        rt.keys.invalidate()
