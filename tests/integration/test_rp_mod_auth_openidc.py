"""Interoperability: Apache httpd with mod_auth_openidc as the relying party.

A third relying party next to oauth4webapi and Authlib's client, and one we do not call as
a library: a stock Debian Apache with libapache2-mod-auth-openidc, configured from the
server's discovery document (apache/httpd.conf.template), protects a CGI "application".
The browser is a ``requests.Session`` that follows the redirects one by one. The sign-in,
the refresh and the logout all run through mod_auth_openidc's own code paths: its
authorization request (state, nonce, PKCE S256), its callback (code exchange with
client_secret_post, ID token validation, UserInfo), its refresh hook and
OIDCRefreshAccessTokenBeforeExpiry, and its logout hook (token revocation, then
RP-initiated logout at end_session_endpoint). Apache must log no error.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import PASSWORD
from tests.integration.apache_rp import APACHE, MOD_AUTH_OPENIDC, ApacheRP, available
from tests.integration.conftest import Harness, Server, free_port, require
from tests.integration.relying_parties import (
    SERVER_ENV,
    USER_EMAIL,
    USER_NAME,
    RPSite,
    walk_authorization,
)

pytestmark = pytest.mark.slow

SCOPE = "openid profile email"
# mod_auth_openidc at LogLevel debug, for every request it makes to the provider.
BACKCHANNEL = re.compile(r"oidc_util_http_call: url=(?P<url>[^,]+), data=(?P<data>[^,]*),")


@dataclass
class Site:
    server: Server
    apache: ApacheRP
    user_id: str
    client_id: str
    client_secret: str

    @property
    def issuer(self) -> str:
        return self.server.url

    @property
    def app_url(self) -> str:
        return self.apache.url + "/protected/app"

    def introspect(self, token: str, hint: str) -> dict[str, Any]:
        """Introspection by mod_auth_openidc's own client (it may see its own tokens)."""
        response = requests.post(
            self.issuer + "/oauth/introspect",
            data={
                "token": token,
                "token_type_hint": hint,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def log_mark(self) -> int:
        """Where Apache's error log ends now, for ``backchannel``."""
        return len(self.apache.log())

    def backchannel(self, since: int, endpoint: str) -> list[dict[str, str]]:
        """The form data of every request mod_auth_openidc made to ``endpoint`` (a path at
        the issuer) since ``log_mark`` returned ``since``; its debug log records each."""
        url = self.issuer + endpoint
        calls = []
        for match in BACKCHANNEL.finditer(self.apache.log()[since:]):
            if match["url"] == url:
                data = parse_qs(match["data"]) if match["data"] != "(null)" else {}
                calls.append({k: v[0] for k, v in data.items()})
        return calls


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness) -> Iterator[Site]:
    """The identity server with mod_auth_openidc's client and a user, and Apache in front
    of a CGI app; Apache is stopped with SIGTERM at the end and must exit 0."""
    require(available(), f"{APACHE} with {MOD_AUTH_OPENIDC} is not installed")
    instance = module_identity_factory.instance(**SERVER_ENV)
    instance.cli("init")
    port = free_port()
    # Each command is a Python process of its own: overlap them with the server's start.
    with ThreadPoolExecutor(max_workers=3) as pool:
        server = pool.submit(module_identity_factory.server, instance)
        user = pool.submit(
            instance.cli,
            "users",
            "create",
            USER_EMAIL,
            "--password-stdin",
            "--verified",
            "--name",
            USER_NAME,
            input=PASSWORD + "\n",
        )
        created = pool.submit(
            instance.cli,
            "clients",
            "create",
            "--name",
            "Apache mod_auth_openidc",
            "--redirect-uri",
            f"http://127.0.0.1:{port}/protected/redirect_uri",
            "--post-logout-redirect-uri",
            f"http://127.0.0.1:{port}/signed-out",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--first-party",
            "--id-token-alg",
            "RS256",
            "--auth-method",
            "client_secret_post",
            "--scope",
            "openid profile email offline_access",
            "--json",
        )
    client = json.loads(created.result().stdout)
    issuer = server.result().url
    apache = ApacheRP.start(port, issuer, client["client_id"], client["client_secret"])
    try:
        yield Site(server.result(), apache, user.result().stdout.split()[0], **client)
    finally:
        try:
            code = apache.stop()
            logs = apache.logs()
        finally:
            apache.remove()
        assert code == 0, f"apache2 exited {code} after SIGTERM:\n{logs}"


@pytest.fixture
def browser(site: Site) -> Iterator[requests.Session]:
    """A fresh browser; afterwards its connections are closed, and Apache must not have
    logged an error (a protocol problem mod_auth_openidc saw) during the test."""
    seen = len(site.apache.bad_log_lines())
    session = requests.Session()
    session.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
    try:
        yield session
    finally:
        session.close()
    new = site.apache.bad_log_lines()[seen:]
    assert not new, "Apache logged errors:\n" + "\n".join(new)


# The browser ----------------------------------------------------------------------------


def parse_env(text: str) -> dict[str, str]:
    """The CGI app's answer: one NAME=value line per variable mod_auth_openidc set."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def app(site: Site, browser: requests.Session, url: str | None = None) -> dict[str, str]:
    """Visit a protected page of a signed-in browser; the variables the app got."""
    page = browser.get(url or site.app_url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, f"{page.status_code} {page.headers}\n{site.apache.logs()}"
    return parse_env(page.text)


def info(site: Site, browser: requests.Session) -> dict[str, Any]:
    """mod_auth_openidc's session info hook (OIDCInfoHook) as JSON."""
    response = browser.get(
        site.apache.redirect_uri, params={"info": "json"}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 200, f"{response.status_code}\n{site.apache.logs()}"
    return response.json()  # type: ignore[no-any-return]


def sign_in(site: Site, browser: requests.Session, path: str = "/protected/app") -> str:
    """The user opens a protected page, is sent to /authorize, signs in on the server's
    page, and comes back through the redirect URI; returns the authorization request."""
    target = site.apache.url + path
    start = browser.get(target, allow_redirects=False, timeout=10)
    assert start.status_code == 302, f"{start.status_code}\n{site.apache.logs()}"
    authorize = start.headers["Location"]
    assert authorize.startswith(site.issuer + "/authorize?"), authorize
    callback = walk_authorization(browser, RPSite(site.server, site.user_id), authorize)
    assert callback.startswith(site.apache.redirect_uri + "?"), callback
    back = browser.get(callback, allow_redirects=False, timeout=10)
    assert back.status_code == 302, f"{back.status_code} {back.text}\n{site.apache.logs()}"
    assert back.headers["Location"] == target, back.headers
    return authorize


def payload(jwt: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the server vouches for the token by introspection)."""
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


# Tests ----------------------------------------------------------------------------------


def test_sign_in_passes_the_users_claims_to_the_app(site: Site, browser: requests.Session) -> None:
    """A protected page sends the browser to /authorize with PKCE S256, and after signing
    in the app behind mod_auth_openidc sees the user's sub, email and name."""
    mark = site.log_mark()
    authorize = sign_in(site, browser)
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert query["client_id"] == site.client_id
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == site.apache.redirect_uri
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] and query["state"] and query["nonce"]
    assert set(query["scope"].split()) == set(SCOPE.split())
    # One code exchange, with the PKCE verifier and client_secret_post.
    (exchange,) = site.backchannel(mark, "/oauth/token")
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code_verifier"]
    assert exchange["client_id"] == site.client_id
    assert exchange["client_secret"] == site.client_secret

    env = app(site, browser)
    assert env["AUTH_TYPE"] == "openid-connect"
    assert env["REMOTE_USER"] == USER_EMAIL  # OIDCRemoteUserClaim email
    assert env["OIDC_CLAIM_sub"] == site.user_id
    assert env["OIDC_CLAIM_email"] == USER_EMAIL
    assert env["OIDC_CLAIM_name"] == USER_NAME
    assert env["OIDC_CLAIM_iss"] == site.issuer
    assert env["OIDC_CLAIM_aud"] == site.client_id
    assert env["OIDC_CLAIM_nonce"] == query["nonce"]
    access = site.introspect(env["OIDC_access_token"], "access_token")
    assert access["active"] is True, access
    assert access["sub"] == site.user_id and access["client_id"] == site.client_id

    session = info(site, browser)
    assert session["id_token"]["sub"] == site.user_id
    assert session["userinfo"]["sub"] == site.user_id  # fetched from /userinfo
    assert session["userinfo"]["email"] == USER_EMAIL
    assert session["userinfo"]["name"] == USER_NAME
    assert session["access_token"] == env["OIDC_access_token"]
    assert session["refresh_token"]
    # The session then serves the app without another round trip to the server.
    assert app(site, browser)["OIDC_access_token"] == env["OIDC_access_token"]
    assert len(site.backchannel(mark, "/oauth/token")) == 1


def test_refresh_hook_gets_new_tokens_with_the_refresh_token(
    site: Site, browser: requests.Session
) -> None:
    """mod_auth_openidc's refresh hook posts grant_type=refresh_token and the app then gets
    a new access token of the same grant family, while the rotated refresh token is dead."""
    sign_in(site, browser)
    before = app(site, browser)
    old_refresh = info(site, browser)["refresh_token"]
    mark = site.log_mark()

    hook = browser.get(
        site.apache.redirect_uri,
        params={"refresh": site.app_url, "access_token": before["OIDC_access_token"]},
        allow_redirects=False,
        timeout=10,
    )
    assert hook.status_code == 302, f"{hook.status_code}\n{site.apache.logs()}"
    assert hook.headers["Location"] == site.app_url  # no ?error_code=...
    (grant,) = site.backchannel(mark, "/oauth/token")
    assert grant["grant_type"] == "refresh_token"
    assert grant["refresh_token"] == old_refresh
    assert grant["client_secret"] == site.client_secret

    after = app(site, browser)
    new_refresh = info(site, browser)["refresh_token"]
    assert after["OIDC_access_token"] != before["OIDC_access_token"]
    assert after["OIDC_CLAIM_sub"] == site.user_id
    assert new_refresh != old_refresh  # rotated
    old_claims = payload(before["OIDC_access_token"])
    new_claims = payload(after["OIDC_access_token"])
    assert new_claims["gid"] == old_claims["gid"]  # the same grant, not a new authorization
    assert new_claims["sid"] == old_claims["sid"]
    assert new_claims["jti"] != old_claims["jti"]
    assert site.introspect(after["OIDC_access_token"], "access_token")["active"] is True
    assert site.introspect(new_refresh, "refresh_token")["active"] is True
    assert site.introspect(old_refresh, "refresh_token") == {"active": False}


def test_refresh_before_expiry_renews_the_access_token(
    site: Site, browser: requests.Session
) -> None:
    """With OIDCRefreshAccessTokenBeforeExpiry longer than the token lifetime, each request
    to that location refreshes with the current refresh token and gets a new access token."""
    url = site.apache.url + "/protected/fresh/app"
    sign_in(site, browser, "/protected/fresh/app")
    mark = site.log_mark()
    tokens = [app(site, browser, url)["OIDC_access_token"] for _ in range(2)]
    grants = site.backchannel(mark, "/oauth/token")
    assert [grant["grant_type"] for grant in grants] == ["refresh_token"] * 2
    assert grants[0]["refresh_token"] != grants[1]["refresh_token"]  # rotation followed
    assert len(set(tokens)) == 2
    assert {payload(token)["sub"] for token in tokens} == {site.user_id}
    assert site.introspect(tokens[-1], "access_token")["active"] is True
    assert site.introspect(info(site, browser)["refresh_token"], "refresh_token")["active"]


def test_logout_hook_ends_the_login_session_at_the_server(
    site: Site, browser: requests.Session
) -> None:
    """The logout hook sends the browser to end_session_endpoint with id_token_hint, the
    server ends its login session and returns to the registered post_logout_redirect_uri,
    and the next visit has to sign in again."""
    sign_in(site, browser)
    env = app(site, browser)
    refresh_token = info(site, browser)["refresh_token"]
    signed_in = browser.get(site.issuer + "/account", allow_redirects=False, timeout=10)
    assert signed_in.status_code == 200  # the server's login session, shared with Apache's
    mark = site.log_mark()

    hook = browser.get(
        site.apache.redirect_uri,
        params={"logout": site.apache.signed_out_uri},
        allow_redirects=False,
        timeout=10,
    )
    assert hook.status_code == 302, f"{hook.status_code}\n{site.apache.logs()}"
    end_session = hook.headers["Location"]
    assert end_session.startswith(site.issuer + "/logout?"), end_session
    query = {k: v[0] for k, v in parse_qs(urlsplit(end_session).query).items()}
    assert query["post_logout_redirect_uri"] == site.apache.signed_out_uri
    assert payload(query["id_token_hint"])["sub"] == site.user_id
    # Before leaving, mod_auth_openidc revoked both its tokens (RFC 7009).
    revoked = site.backchannel(mark, "/oauth/revoke")
    assert {(call["token_type_hint"], call["token"]) for call in revoked} == {
        ("refresh_token", refresh_token),
        ("access_token", env["OIDC_access_token"]),
    }

    ended = browser.get(end_session, allow_redirects=False, timeout=10)
    assert ended.status_code == 302, ended.text
    back = ended.headers["Location"]
    assert urlsplit(back)._replace(query="").geturl() == site.apache.signed_out_uri, back
    page = browser.get(back, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and page.text.startswith("signed out"), page.text

    # The server's login session is over: its own pages ask to sign in again.
    account = browser.get(site.issuer + "/account", allow_redirects=False, timeout=10)
    assert account.status_code == 302, account.text
    assert urlsplit(account.headers["Location"]).path == "/sign-in", account.headers
    # mod_auth_openidc's session is over too, and /authorize shows the sign-in page.
    again = browser.get(site.app_url, allow_redirects=False, timeout=10)
    assert again.status_code == 302
    assert again.headers["Location"].startswith(site.issuer + "/authorize?")
    authorize = browser.get(again.headers["Location"], allow_redirects=True, timeout=10)
    assert authorize.status_code == 200 and 'action="/sign-in"' in authorize.text
    # The tokens are dead (revoked, and their grant was bound to the ended session).
    assert site.introspect(env["OIDC_access_token"], "access_token") == {"active": False}
    assert site.introspect(refresh_token, "refresh_token") == {"active": False}
