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
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.keys import ALGORITHMS
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
        """Run /authorize (signing in and consenting as needed); returns callback params and
        the verifier."""
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


# OpenID conformance (OIDC-*) and JOSE (TOK-*) helpers --------------------------------------

RESPONSE_MODES = ("query", "form_post")
_RSA_POOL: list[Any] = []
_IMPORTED: dict[str, Any] = {}


@pytest.fixture
def fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse RSA keys generated earlier in the session (3072-bit generation costs ~0.3 s a
    key); each test still gets distinct keys, and every other algorithm is generated anew."""
    from identity.oauth import keys as key_module

    real = key_module.generate_jwk
    used = [0]

    def generate(alg: str) -> Any:
        if alg != "RS256":
            return real(alg)
        if used[0] == len(_RSA_POOL):
            _RSA_POOL.append(real(alg))
        used[0] += 1
        return _RSA_POOL[used[0] - 1]

    monkeypatch.setattr(key_module, "generate_jwk", generate)

    # Loading a private RSA key checks it (~0.4 s for 3072 bits); the pool's keys are
    # checked once per session.
    real_import = key_module.import_key

    def import_key(data: dict[str, Any]) -> Any:
        import json

        cache_key = json.dumps(data, sort_keys=True)
        if cache_key not in _IMPORTED:
            _IMPORTED[cache_key] = real_import(data)
        return _IMPORTED[cache_key]

    monkeypatch.setattr(key_module, "import_key", import_key)


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, without checking anything."""
    import json

    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def forge(
    header: dict[str, Any],
    claims: dict[str, Any] | bytes,
    key: Any = None,
    *,
    signature: bytes | None = None,
) -> str:
    """A compact JWS built by hand, so that headers joserfc would refuse (alg none, crit,
    jwk, jku) can be sent. Signed with ``key`` under ``header['alg']`` unless a raw
    ``signature`` is given."""
    import json

    from joserfc.jws import JWSRegistry

    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{b64url(json.dumps(header))}.{b64url(payload)}"
    if signature is None:
        signature = (
            b""
            if key is None
            else JWSRegistry.algorithms[header["alg"]].sign(signing_input.encode(), key)
        )
    return f"{signing_input}.{b64url(signature)}"


def hs256(signing_input_header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 with an arbitrary byte string as the secret (e.g. our public key's PEM)."""
    import hmac
    import json

    signing_input = f"{b64url(json.dumps(signing_input_header))}.{b64url(json.dumps(claims))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def server_key(app: Flask, alg: str) -> tuple[str, Any]:
    """Grey-box: the server's current signing key (kid, private joserfc key) for ``alg``."""
    from identity.extensions import db

    with app.app_context():
        return app.extensions["identity"].keys.ring(db.session).signing[alg]  # type: ignore[no-any-return]


def parse_forms(html: str) -> list[dict[str, Any]]:
    """Every <form> of a page: its attributes and its inputs, plus every URL on the page."""
    from html.parser import HTMLParser

    forms: list[dict[str, Any]] = []

    class Parser(HTMLParser):
        urls: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {k: v or "" for k, v in attrs}
            for name in ("href", "src", "action"):
                if name in values:
                    self.urls.append(values[name])
            if tag == "form":
                forms.append({"attrs": values, "inputs": []})
            elif tag == "input" and forms:
                forms[-1]["inputs"].append((values.get("name", ""), values.get("value", "")))

    parser = Parser()
    parser.urls = []
    parser.feed(html)
    for form in forms:
        form["urls"] = parser.urls
    return forms


def callback(response: Any, redirect_uri: str) -> dict[str, str]:
    """The authorization response as the client receives it, in either response mode.

    A redirect must go to the redirect URI; a form_post page (OIDC-58) must hold exactly one
    form that POSTs application/x-www-form-urlencoded to the redirect URI, with the
    parameters as hidden inputs and the code in no URL on the page.
    """
    if response.status_code in (302, 303):
        location = response.headers["Location"]
        assert location.split("?")[0] == redirect_uri.split("?", maxsplit=1)[0], location
        return callback_params(location)
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    html = response.get_data(as_text=True)
    forms = parse_forms(html)
    assert len(forms) == 1, html
    form = forms[0]
    assert form["attrs"].get("method", "").lower() == "post"
    assert form["attrs"].get("action") == redirect_uri
    assert form["attrs"].get("enctype", "application/x-www-form-urlencoded") == (
        "application/x-www-form-urlencoded"
    )
    params = dict(form["inputs"])
    assert len(params) == len(form["inputs"]), "a parameter appears twice"
    for value in params.values():
        assert all(value not in url for url in form["urls"] if value), "a value leaks into a URL"
    return params


class ModeFlow(Flow):
    """The flow driver in a response mode: ``query`` (redirect) or ``form_post``."""

    def __init__(self, client: FlaskClient, mode: str) -> None:
        super().__init__(client)
        self.mode = mode

    def start(self, rp: RegisteredClient, **params: str) -> tuple[Any, str]:
        """GET /authorize in this mode; returns the raw response and the PKCE verifier."""
        verifier, challenge = pkce_pair()
        if self.mode != "query":
            params.setdefault("response_mode", self.mode)
        return self.browser.get(authorize_url(rp, challenge, **params)), verifier

    def authorize(
        self, rp: RegisteredClient, *, consent: bool = True, **params: str
    ) -> tuple[dict[str, str], str]:
        response, verifier = self.start(rp, **params)
        response = self.follow_to_client(response, consent=consent)
        return callback(response, params.get("redirect_uri", rp.redirect_uri)), verifier

    def tokens(self, rp: RegisteredClient, **params: str) -> dict[str, Any]:
        """The whole flow to the token response; returns its JSON body."""
        result, verifier = self.authorize(rp, **params)
        assert "code" in result, result
        response = redeem(self.browser, rp, result["code"], verifier)
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]


@pytest.fixture(params=RESPONSE_MODES)
def response_mode(request: pytest.FixtureRequest) -> str:
    """Both response modes: the form_post plan runs every basic module again (OIDC-58)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def mode_flow(client: FlaskClient, user: Any, response_mode: str) -> ModeFlow:
    return ModeFlow(client, response_mode)


@pytest.fixture
def query_flow(client: FlaskClient, user: Any) -> ModeFlow:
    return ModeFlow(client, "query")


def redeem(client: FlaskClient, rp: RegisteredClient, code: str, verifier: str) -> Any:
    return token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=code,
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def public_jwks(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/jwks.json")
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def verify_with_jwks(client: FlaskClient, token: str) -> dict[str, Any]:
    """Verify a token as a relying party does: the JWKS key named by kid, its own alg."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    header, _ = unverified(token)
    key_set = KeySet.import_key_set(public_jwks(client))
    key = key_set.get_by_kid(header["kid"])
    return dict(jwt.decode(token, key, algorithms=[key.alg or header["alg"]]).claims)


LOGGED_OUT_URI = "https://rp.example.org/logged-out"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class JoseHarness:
    """Every place the server verifies a JWT, each answering whether it accepted a token.

    access tokens: /userinfo and /oauth/introspect; ID tokens: id_token_hint at /authorize
    (prompt=none, for a signed-in user who consented) and at /logout (a browser without a
    session, so acceptance shows as the redirect); client assertions: private_key_jwt at the
    token endpoint. A 5xx from any of them fails the test at once.
    """

    def __init__(self, app: Flask, browser: FlaskClient, make_client: Any) -> None:
        from joserfc.jwk import ECKey

        self.app = app
        self.browser = browser
        self.issuer = app.extensions["identity"].settings.issuer
        self.rp = make_client(post_logout_redirect_uris=[LOGGED_OUT_URI])
        self.resource_server = make_client(
            "Resource server",
            resource_server=True,
            grant_types=["client_credentials"],
            redirect_uris=[],
            scope="roles",
        )
        self.client_key = ECKey.generate_key("P-256")
        public = dict(self.client_key.as_dict(private=False), kid="client-key-1", alg="ES256")
        self.assertion_client = make_client(
            "Service",
            auth_method="private_key_jwt",
            jwks={"keys": [public]},
            grant_types=["client_credentials"],
            redirect_uris=[],
            scope="roles",
        )
        body = ModeFlow(browser, "query").tokens(self.rp)
        self.access_token: str = body["access_token"]
        self.id_token: str = body["id_token"]
        self.refresh_token: str = body["refresh_token"]

    # The verifiers -------------------------------------------------------------------

    @staticmethod
    def _ok(response: Any) -> Any:
        assert response.status_code < 500, response.data[:300]
        return response

    def userinfo(self, token: str) -> bool:
        response = self._ok(self.browser.get("/userinfo", headers=bearer(token)))
        return bool(response.status_code == 200)

    def introspect(self, token: str, rs: RegisteredClient | None = None) -> bool:
        response = self._ok(
            self.browser.post(
                "/oauth/introspect",
                data={"token": token},
                headers=(rs or self.resource_server).basic_auth(),
            )
        )
        if response.status_code == 413:
            return False  # refused before parsing
        assert response.status_code == 200, response.json
        return bool(response.json["active"])

    def authorize_hint(self, token: str, rp: RegisteredClient | None = None) -> bool:
        rp = rp or self.rp
        _, challenge = pkce_pair()
        response = self._ok(
            self.browser.get(authorize_url(rp, challenge, prompt="none", id_token_hint=token))
        )
        if response.status_code not in (302, 303):
            return False
        return "code" in callback_params(response.headers["Location"])

    def logout_hint(self, token: str) -> bool:
        from urllib.parse import urlencode

        query = urlencode({"id_token_hint": token, "post_logout_redirect_uri": LOGGED_OUT_URI})
        response = self._ok(self.app.test_client().get("/logout?" + query))
        return response.headers.get("Location") == LOGGED_OUT_URI

    def client_assertion(self, assertion: str) -> bool:
        response = self._ok(
            self.browser.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": assertion,
                },
            )
        )
        return bool(response.status_code == 200)

    VERIFIERS = {
        "access": ("userinfo", "introspect"),
        "id": ("authorize_hint", "logout_hint"),
        "assertion": ("client_assertion",),
    }

    def verdicts(self, kind: str, token: str) -> dict[str, bool]:
        return {name: getattr(self, name)(token) for name in self.VERIFIERS[kind]}

    def accepted_anywhere(self, kind: str, token: str) -> list[str]:
        return [name for name, ok in self.verdicts(kind, token).items() if ok]

    # Genuine material ------------------------------------------------------------------

    def assertion_claims(self, **overrides: Any) -> dict[str, Any]:
        import time

        now = int(time.time())
        claims = {
            "iss": self.assertion_client.client_id,
            "sub": self.assertion_client.client_id,
            "aud": f"{self.issuer}/oauth/token",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(overrides)
        return claims

    def genuine(self, kind: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """Header, claims and signing key of a genuine token of that kind (grey-box for ours:
        the server's own private key)."""
        if kind == "assertion":
            header = {"alg": "ES256", "kid": "client-key-1", "typ": "JWT"}
            return header, self.assertion_claims(), self.client_key
        token = self.access_token if kind == "access" else self.id_token
        header, claims = unverified(token)
        kid, key = server_key(self.app, header["alg"])
        assert kid == header["kid"]
        return header, claims, key

    def fresh(self, kind: str, claims: dict[str, Any]) -> dict[str, Any]:
        """Claims of a kind made unique again where the verifier remembers them (jti)."""
        if kind == "assertion":
            return {**claims, "jti": secrets.token_urlsafe(16)}
        return claims


@pytest.fixture
def jose(fast_keys: None, app: Flask, client: FlaskClient, user: Any, make_client: Any) -> Any:
    return JoseHarness(app, client, make_client)


TOKEN_KINDS = ("access", "id", "assertion")
