"""Interoperability: Authlib's OAuth 2.0 / OpenID Connect *client* against the real server.

The relying party is a small Flask app using Authlib's Flask client integration (built on
``authlib.integrations.requests_client.OAuth2Session`` and ``authlib.oidc``): it builds the
authorization URL with state, nonce and PKCE, keeps them in its session, checks state on
the callback, exchanges the code and validates the ID token (signature from jwks_uri, iss,
aud, nonce, azp, at_hash). ``OAuth2Session`` does refresh, introspection, revocation,
client_credentials, the device grant and PAR; Authlib's RFC 9068 ``JWTBearerTokenValidator``
checks access tokens as a resource server would. Authlib has no helper for the device
authorization request or for pushing a request (RFC 9126), so those two requests are posted
through the session with the library's own client authentication.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from tests.integration.conftest import Harness
from tests.integration.relying_parties import (
    DEVICE_GRANT,
    USER_EMAIL,
    USER_NAME,
    RPSite,
    approve_device,
    start_site,
    walk_authorization,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness) -> RPSite:
    """One server for the module, with the relying parties registered by the CLI."""
    return start_site(module_identity_factory)


MakeRP = Callable[[str], "RelyingParty"]


@pytest.fixture
def make_rp(site: RPSite) -> Iterator[MakeRP]:
    """Relying parties for one test; their browsers' connections are closed afterwards, so
    no idle keep-alive connection holds up the server's graceful shutdown."""
    made: list[RelyingParty] = []

    def factory(name: str) -> RelyingParty:
        made.append(RelyingParty(site, name))
        return made[-1]

    yield factory
    for rp in made:
        rp.browser.close()


# The relying party ----------------------------------------------------------------------


class RelyingParty:
    """A Flask app that signs its users in with Authlib, and the browser that visits both
    it and the identity server."""

    def __init__(self, site: RPSite, name: str) -> None:
        self.site = site
        self.registered = site.clients[name]
        app = Flask(f"rp_{name}")
        app.secret_key = "relying-party-secret-" + "x" * 32
        oauth = OAuth(app)
        self.remote = oauth.register(
            name,
            client_id=self.registered.client_id,
            client_secret=self.registered.client_secret,
            server_metadata_url=site.issuer + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": "openid profile email",
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": self.registered.auth_method,
            },
        )
        remote = self.remote

        @app.get("/login")
        def login() -> Any:
            return remote.authorize_redirect(self.registered.redirect_uri, **request.args)

        @app.get("/cb")
        def callback() -> Any:
            try:
                token = remote.authorize_access_token(claims_options=self.claims_options())
            except OAuthError as error:
                return jsonify(error=error.error), 400
            return jsonify(token)

        @app.get("/logout")
        def logout() -> Any:
            return remote.logout_redirect(
                self.registered.post_logout_redirect_uri, request.args["id_token_hint"]
            )

        @app.get("/signed-out")
        def signed_out() -> Any:
            try:
                data = remote.validate_logout_response()
            except OAuthError as error:
                return jsonify(error=error.description), 400
            return jsonify(data)

        self.app: FlaskClient = app.test_client()
        self.browser = requests.Session()

    def claims_options(self) -> dict[str, Any]:
        """What the RP expects of an ID token beyond Authlib's defaults: this issuer, this
        client as the audience (Authlib checks aud only when told), a subject."""
        return {
            "iss": {"essential": True, "value": self.site.issuer},
            "aud": {"essential": True, "value": self.registered.client_id},
            "sub": {"essential": True},
        }

    def sign_in(self, **params: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The user clicks "sign in" at the RP: returns the RP's callback status and JSON
        and the parameters the server put on the redirect URI."""
        start = self.app.get("/login?" + urlencode(params))
        assert start.status_code == 302, start.text
        final = walk_authorization(self.browser, self.site, start.headers["Location"])
        assert final.startswith(self.registered.redirect_uri + "?"), final
        answer = self.app.get("/cb?" + urlsplit(final).query)
        return answer.status_code, answer.json, _query(final)

    def session(self, **kwargs: Any) -> OAuth2Session:
        metadata = self.site.metadata()
        return OAuth2Session(
            self.registered.client_id,
            self.registered.client_secret,
            token_endpoint_auth_method=self.registered.auth_method,
            revocation_endpoint_auth_method=self.registered.auth_method,
            token_endpoint=metadata["token_endpoint"],
            **kwargs,
        )

    def parse_id_token(self, token: dict[str, Any], nonce: str | None = None) -> dict[str, Any]:
        """Authlib's ID token validation for a token not obtained through the callback."""
        return dict(
            self.remote.parse_id_token(token, nonce=nonce, claims_options=self.claims_options())
        )


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _alg(jwt: str) -> str:
    return str(jws.extract_compact(jwt.encode()).headers()["alg"])


class ResourceServerValidator(JWTBearerTokenValidator):  # type: ignore[misc]
    """Authlib's RFC 9068 validator, with the server's published keys."""

    def __init__(self, site: RPSite, audience: str) -> None:
        super().__init__(issuer=site.issuer, resource_server=audience)
        self.site = site

    def get_jwks(self) -> KeySet:
        return KeySet.import_key_set(
            requests.get(self.site.metadata()["jwks_uri"], timeout=10).json()
        )

    def check(self, access_token: str, scopes: list[str] | None = None) -> dict[str, Any]:
        claims = self.authenticate_token(access_token)
        self.validate_token(claims, scopes or [], None)
        return dict(claims)


def introspect(site: RPSite, token: str, hint: str | None = None) -> dict[str, Any]:
    """Introspection by the resource-server client (RFC 7662)."""
    rs = site.clients["rs"]
    with OAuth2Session(
        rs.client_id, rs.client_secret, token_endpoint_auth_method=rs.auth_method
    ) as session:
        response = session.introspect_token(
            site.metadata()["introspection_endpoint"], token=token, token_type_hint=hint
        )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# Tests ----------------------------------------------------------------------------------


def test_code_flow_es256_confidential_client(site: RPSite, make_rp: MakeRP) -> None:
    """Authlib's RP completes the code flow with PKCE for a confidential client and accepts
    the ES256 ID token (signature, iss, aud, nonce, at_hash) and the UserInfo answer."""
    rp = make_rp("web")
    status, token, callback = rp.sign_in()
    assert status == 200, token
    assert callback["iss"] == site.issuer  # RFC 9207 (Authlib does not check it itself)
    assert _alg(token["id_token"]) == "ES256"
    claims = token["userinfo"]  # the validated ID token claims
    assert claims["sub"] == site.user_id
    assert claims["aud"] == rp.registered.client_id
    assert claims["at_hash"]
    assert claims["email"] == USER_EMAIL
    assert token["token_type"] == "Bearer"
    assert token["refresh_token"]
    info = rp.remote.userinfo(token=token)
    assert info["sub"] == site.user_id
    assert info["name"] == USER_NAME
    assert info["email_verified"] is True


def test_id_token_with_a_wrong_nonce_is_refused_by_authlib(site: RPSite, make_rp: MakeRP) -> None:
    """Authlib refuses an ID token whose nonce is not the one the RP sent: the RP's checks
    in these tests are real, so a server that echoed the wrong nonce would fail them."""
    rp = make_rp("web")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    with pytest.raises(Exception, match="nonce"):
        rp.parse_id_token(token, nonce="not-the-nonce-we-sent")


def test_code_flow_rs256_public_client(site: RPSite, make_rp: MakeRP) -> None:
    """A public first-party client registered with --id-token-alg RS256: no secret, no
    consent page, and an RS256 ID token that Authlib verifies."""
    rp = make_rp("rs256")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    assert _alg(token["id_token"]) == "RS256"
    assert token["userinfo"]["sub"] == site.user_id
    assert token["userinfo"]["aud"] == rp.registered.client_id


def test_refresh_rotates_and_refuses_the_old_token(site: RPSite, make_rp: MakeRP) -> None:
    """OAuth2Session refreshes: a new refresh token and an ID token for the same subject
    and original auth_time (OIDC Core 12.2); the old refresh token then gets invalid_grant."""
    rp = make_rp("web")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    with rp.session() as session:
        refreshed = dict(session.refresh_token(refresh_token=token["refresh_token"]))
        claims = rp.parse_id_token(refreshed)
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert refreshed["access_token"] != token["access_token"]
        assert claims["sub"] == token["userinfo"]["sub"]
        assert claims["auth_time"] == token["userinfo"]["auth_time"]
        with pytest.raises(OAuthError) as replay:
            session.refresh_token(refresh_token=token["refresh_token"])
    assert replay.value.error == "invalid_grant"
    # The replay revoked the whole family, the new access token included.
    assert introspect(site, refreshed["access_token"])["active"] is False


def test_introspection_by_a_resource_server(site: RPSite, make_rp: MakeRP) -> None:
    """A resource server introspects the RP's access and refresh tokens; the access token
    also passes Authlib's RFC 9068 validator."""
    rp = make_rp("web")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    access = introspect(site, token["access_token"], "access_token")
    assert access["active"] is True
    assert access["sub"] == site.user_id
    assert access["client_id"] == rp.registered.client_id
    assert access["iss"] == site.issuer
    refresh = introspect(site, token["refresh_token"], "refresh_token")
    assert refresh["active"] is True
    assert refresh["client_id"] == rp.registered.client_id
    assert introspect(site, "not-a-token") == {"active": False}
    claims = ResourceServerValidator(site, rp.registered.client_id).check(
        token["access_token"], ["openid"]
    )
    assert claims["sub"] == site.user_id


def test_revocation(site: RPSite, make_rp: MakeRP) -> None:
    """OAuth2Session revokes the access token, then the refresh token (RFC 7009): each is
    inactive afterwards and the refresh token no longer refreshes."""
    rp = make_rp("web")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    endpoint = site.metadata()["revocation_endpoint"]
    with rp.session() as session:
        response = session.revoke_token(endpoint, token["access_token"], "access_token")
        assert response.status_code == 200, response.text
        assert introspect(site, token["access_token"])["active"] is False
        userinfo = requests.get(
            site.metadata()["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=10,
        )
        assert userinfo.status_code == 401
        response = session.revoke_token(endpoint, token["refresh_token"], "refresh_token")
        assert response.status_code == 200, response.text
        assert introspect(site, token["refresh_token"])["active"] is False
        with pytest.raises(OAuthError) as refused:
            session.refresh_token(refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"


def test_client_credentials(site: RPSite) -> None:
    """A service gets a token with client_credentials (client_secret_post); Authlib's RFC
    9068 validator accepts it (typ at+jwt, iss, aud, exp, jti, signature)."""
    rs = site.clients["rs"]
    with OAuth2Session(
        rs.client_id, rs.client_secret, token_endpoint_auth_method=rs.auth_method, scope="roles"
    ) as session:
        token = dict(
            session.fetch_token(site.metadata()["token_endpoint"], grant_type="client_credentials")
        )
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "roles"
    assert "refresh_token" not in token and "id_token" not in token
    claims = ResourceServerValidator(site, rs.client_id).check(token["access_token"], ["roles"])
    assert claims["sub"] == claims["client_id"] == rs.client_id


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's private_key_jwt client auth with 5-minute assertions.

    Authlib signs assertions that live an hour; this server takes at most 600 s
    (docs/oidc.md; RFC 7523 section 3 lets a server refuse an exp far in the future).
    ``PrivateKeyJWT(claims={"exp": ...})`` would not do: Authlib writes the generated
    ``jti`` into that dict, so every later assertion repeats it and is refused as a replay.
    """

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(  # type: ignore[no-any-return]
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header=self.headers,
            expires_in=300,
        )


def test_private_key_jwt(site: RPSite) -> None:
    """A client authenticating with private_key_jwt (Authlib's RFC 7523 client auth signs
    each assertion, aud the endpoint it calls) gets a token and introspects it; a replayed
    assertion is refused."""
    registered = site.clients["jwt"]
    assert registered.private_jwk is not None
    key = ECKey.import_key(registered.private_jwk)
    metadata = site.metadata()
    with OAuth2Session(
        registered.client_id,
        key,
        token_endpoint_auth_method="private_key_jwt",
        scope="roles",
    ) as session:
        session.register_client_auth_method(
            ShortLivedPrivateKeyJWT(alg="ES256", headers={"kid": registered.private_jwk["kid"]})
        )
        token = dict(
            session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        )
        introspected = session.introspect_token(
            metadata["introspection_endpoint"], token=token["access_token"]
        )
    assert token["scope"] == "roles"
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True
    assert introspected.json()["client_id"] == registered.client_id

    assertion = private_key_jwt_sign(
        key,
        registered.client_id,
        metadata["token_endpoint"],
        alg="ES256",
        header={"kid": registered.private_jwk["kid"]},
        expires_in=300,
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    first = requests.post(metadata["token_endpoint"], data=form, timeout=10)
    assert first.status_code == 200, first.text
    replayed = requests.post(metadata["token_endpoint"], data=form, timeout=10)
    # RFC 6749 section 5.2: 401 is required only when the client used the Authorization
    # header; an assertion in the body may get 400.
    assert replayed.status_code in (400, 401)
    assert replayed.json()["error"] == "invalid_client"


def test_device_flow(site: RPSite, make_rp: MakeRP) -> None:
    """Device flow (RFC 8628): OAuth2Session polls the token endpoint while the user
    approves the code at /device; Authlib then validates the ID token."""
    rp = make_rp("device")
    metadata = site.metadata()
    with rp.session() as session:
        started = session.post(
            metadata["device_authorization_endpoint"],
            data={"scope": "openid profile email"},
            auth=session.client_auth(rp.registered.auth_method),
        )
        assert started.status_code == 200, started.text
        grant = started.json()
        polls: list[str] = []
        interval = grant["interval"]
        deadline = time.monotonic() + 30
        while True:
            time.sleep(interval)
            try:
                token = dict(
                    session.fetch_token(
                        metadata["token_endpoint"],
                        grant_type=DEVICE_GRANT,
                        device_code=grant["device_code"],
                    )
                )
                break
            except OAuthError as error:
                polls.append(error.error)
                assert error.error in ("authorization_pending", "slow_down"), error
                interval += 5 if error.error == "slow_down" else 0  # RFC 8628 section 3.5
                assert time.monotonic() < deadline, polls
            if len(polls) == 1:
                # The device has been told to wait: now the user approves, between polls.
                approve_device(site, grant["user_code"])
    assert "authorization_pending" in polls
    claims = rp.parse_id_token(token)
    assert claims["sub"] == site.user_id
    assert claims["aud"] == rp.registered.client_id
    assert token["refresh_token"]


def test_pushed_authorization_request(site: RPSite, make_rp: MakeRP) -> None:
    """PAR (RFC 9126): the request Authlib built is pushed with its client authentication,
    /authorize takes only client_id and request_uri, and Authlib completes the flow."""
    rp = make_rp("web")
    metadata = site.metadata()
    with rp.session(
        scope="openid profile email",
        redirect_uri=rp.registered.redirect_uri,
        code_challenge_method="S256",
    ) as session:
        verifier = "v" * 20 + "erifier-" + "x" * 40
        url, state = session.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce="par-nonce-1"
        )
        pushed = session.post(
            metadata["pushed_authorization_request_endpoint"],
            data=_query(url),
            auth=session.client_auth(rp.registered.auth_method),
        )
        assert pushed.status_code == 201, pushed.text
        request_uri = pushed.json()["request_uri"]
        start = (
            metadata["authorization_endpoint"]
            + "?"
            + urlencode({"client_id": rp.registered.client_id, "request_uri": request_uri})
        )
        callback = walk_authorization(rp.browser, site, start)
        token = dict(
            session.fetch_token(
                authorization_response=callback, state=state, code_verifier=verifier
            )
        )
    claims = rp.parse_id_token(token, nonce="par-nonce-1")
    assert claims["sub"] == site.user_id
    assert _query(callback)["iss"] == site.issuer
    reused = rp.browser.get(start, allow_redirects=False, timeout=10)
    assert reused.status_code == 400  # one use only (RFC 9126 section 4)


def test_rp_initiated_logout(site: RPSite, make_rp: MakeRP) -> None:
    """Authlib's logout_redirect sends the user to end_session_endpoint with id_token_hint;
    the server returns to the registered URI with the state Authlib checks, and afterwards
    prompt=none yields login_required, which Authlib raises as an OAuthError."""
    rp = make_rp("web")
    status, token, _ = rp.sign_in()
    assert status == 200, token
    status, silent, _ = rp.sign_in(prompt="none")  # still signed in: no page at all
    assert status == 200, silent
    start = rp.app.get("/logout?" + urlencode({"id_token_hint": token["id_token"]}))
    assert start.status_code == 302
    final = walk_authorization(rp.browser, site, start.headers["Location"])
    assert final.startswith(rp.registered.post_logout_redirect_uri + "?"), final
    back = rp.app.get("/signed-out?" + urlsplit(final).query)
    assert back.status_code == 200, back.json
    assert back.json == {"post_logout_redirect_uri": rp.registered.post_logout_redirect_uri}
    status, answer, callback = rp.sign_in(prompt="none")
    assert status == 400
    assert answer == {"error": "login_required"}
    assert callback["iss"] == site.issuer
