"""Fixtures for the OAuth 2.0 / OpenID Connect tests: keys, clients and a flow driver."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, csrf_token

REDIRECT_URI = "https://rp.example.org/cb"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


@dataclass
class RegisteredClient:
    client_id: str
    client_secret: str | None
    redirect_uri: str

    def basic_auth(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def keys(app: Flask) -> None:
    """Signing keys as `identity init` creates them (ES256 and RS256)."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():
        rt = app.extensions["identity"]
        ensure_keys(db.session, rt.keys.cipher, ("ES256", "RS256"))
        db.session.commit()
        rt.keys.invalidate()


@pytest.fixture
def make_client(app: Flask, keys: None) -> Any:
    from identity.extensions import db
    from identity.oauth import clients as client_service
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.metadata import normalize_metadata
    from identity.oauth.scopes import KNOWN_SCOPES

    def factory(
        name: str = "Relying Party",
        *,
        redirect_uris: list[str] | None = None,
        grant_types: list[str] | None = None,
        scope: str = "openid profile email offline_access",
        auth_method: str = "client_secret_basic",
        first_party: bool = False,
        resource_server: bool = False,
        registered_via: str = "cli",
        **extra: Any,
    ) -> RegisteredClient:
        raw = {
            "redirect_uris": redirect_uris if redirect_uris is not None else [REDIRECT_URI],
            "grant_types": grant_types or ["authorization_code", "refresh_token"],
            "scope": scope,
            "token_endpoint_auth_method": auth_method,
            **extra,
        }
        with app.app_context():
            meta = normalize_metadata(
                raw,
                known_scopes=KNOWN_SCOPES,
                signing_algs=ALGORITHMS,
                default_id_token_alg="ES256",
            )
            created = client_service.create_client(
                db.session,
                name=name,
                meta=meta,
                first_party=first_party,
                resource_server=resource_server,
                registered_via=registered_via,
            )
            db.session.commit()
            return RegisteredClient(
                created.client.client_id,
                created.client_secret,
                meta["redirect_uris"][0] if meta["redirect_uris"] else "",
            )

    return factory


@pytest.fixture
def rp(make_client: Any) -> RegisteredClient:
    return make_client()


def authorize_url(client: RegisteredClient, challenge: str | None, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid profile email",
        "state": "state-123",
        "nonce": "nonce-456",
    }
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    query.update(params)
    from urllib.parse import urlencode

    return "/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Flow:
    """Drives the browser side of the code flow through the test client."""

    def __init__(self, client: FlaskClient) -> None:
        self.browser = client

    def authorize(
        self, rp: RegisteredClient, *, consent: bool = True, **params: str
    ) -> tuple[dict[str, str], str]:
        """Run /authorize (signing in and consenting as needed); returns callback params and the verifier."""
        verifier, challenge = pkce_pair()
        response = self.browser.get(authorize_url(rp, challenge, **params))
        response = self.follow_to_client(response, consent=consent)
        return callback_params(response.headers["Location"]), verifier

    def follow_to_client(self, response: Any, *, consent: bool = True) -> Any:
        for _ in range(6):
            if response.status_code in (302, 303):
                location = response.headers["Location"]
                if location.startswith(("https://", "http://")) and not location.startswith(
                    "http://localhost"
                ):
                    return response
                if location.startswith("/sign-in"):
                    page = self.browser.get(location)
                    assert page.status_code == 200
                    response = self._sign_in_form(location, page)
                    continue
                response = self.browser.get(location)
                continue
            if response.status_code == 200 and b'action="/authorize/consent"' in response.data:
                decision = "allow" if consent else "deny"
                response = self.browser.post(
                    "/authorize/consent",
                    data={
                        "csrf_token": csrf_token(response.data),
                        "request_id": _request_id(response.data),
                        "decision": decision,
                    },
                )
                continue
            return response
        raise AssertionError("too many redirects")

    def _sign_in_form(self, location: str, page: Any) -> Any:
        next_value = parse_qs(urlsplit(location).query).get("next", ["/"])[0]
        return self.browser.post(
            "/sign-in",
            data={
                "csrf_token": csrf_token(page.data),
                "email": "alice@example.org",
                "password": PASSWORD,
                "next": next_value,
            },
        )


def _request_id(html: bytes) -> str:
    import re

    match = re.search(rb'name="request_id" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1).decode()


@pytest.fixture
def flow(client: FlaskClient, user: Any) -> Flow:
    return Flow(client)


def token_request(client: FlaskClient, rp: RegisteredClient, **data: str) -> Any:
    return client.post("/oauth/token", data=data, headers=rp.basic_auth())
