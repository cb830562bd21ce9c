"""A real server with relying-party clients registered through the CLI, shared by the
interoperability tests that drive it with third-party client libraries
(test_rp_oauth4webapi.py, test_rp_authlib.py)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from joserfc.jwk import ECKey

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server, free_port, post_form, sign_in

USER_EMAIL = "ada@example.org"
USER_NAME = "Ada Lovelace"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# The test server: sign-ins from one address well above the default 10/minute (every
# scenario signs in afresh), and a one-second device polling interval to keep runs short.
SERVER_ENV = {
    "IDENTITY_RATELIMIT_SIGN_IN": "200/minute",
    "IDENTITY_DEVICE_CODE_INTERVAL": "1",
}


@dataclass
class RegisteredClient:
    client_id: str
    auth_method: str
    client_secret: str | None = None
    redirect_uri: str | None = None
    post_logout_redirect_uri: str | None = None
    id_token_alg: str | None = None
    private_jwk: dict[str, Any] | None = None  # private_key_jwt: the client's own key

    def as_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class RPSite:
    server: Server
    user_id: str
    clients: dict[str, RegisteredClient] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.server.url

    def config(self) -> dict[str, Any]:
        """What a relying-party script needs: issuer, the user's credentials, the clients."""
        return {
            "issuer": self.issuer,
            "user": {"email": USER_EMAIL, "password": PASSWORD},
            "clients": {name: c.as_config() for name, c in self.clients.items()},
        }

    def metadata(self) -> dict[str, Any]:
        response = requests.get(self.issuer + "/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def start_site(harness: Harness) -> RPSite:
    """Start a server and register, with `identity clients create`, the clients every
    interoperability test uses:

    * ``web``: confidential (client_secret_basic), code + refresh, consent shown, a
      post-logout redirect URI; its ID tokens are ES256 (asked for: RS256 is the default).
    * ``rs256`` (also ``device``): a public native app (none, PKCE only), first party, ID
      tokens signed with RS256, code flow and device flow (RFC 8628).
    * ``rs``: a resource server (client_secret_post) that may introspect any token and
      gets tokens of its own with client_credentials.
    * ``jwt``: client_credentials with private_key_jwt, its public key registered with
      --jwks (the private one stays with the relying party).
    """
    instance = harness.instance(**SERVER_ENV)
    instance.cli("init")
    port = free_port()  # nothing listens there: the browser never fetches the redirect URI
    redirect_uri = f"http://127.0.0.1:{port}/cb"
    logout_uri = f"http://127.0.0.1:{port}/signed-out"
    key = ECKey.generate_key("P-256", {"kid": "rp-key-1", "alg": "ES256", "use": "sig"})
    private_jwk = key.as_dict(private=True)
    jwks_path = instance.path / "rp-jwks.json"
    jwks_path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))

    def create(name: str, *args: str) -> dict[str, str]:
        result = instance.cli("clients", "create", "--name", name, *args, "--json")
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    # Each command is a Python process of its own: overlap them a little with the server.
    with ThreadPoolExecutor(max_workers=3) as pool:
        server = pool.submit(harness.server, instance)
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
        web = pool.submit(
            create,
            "Web RP",
            "--redirect-uri",
            redirect_uri,
            "--post-logout-redirect-uri",
            logout_uri,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--auth-method",
            "client_secret_basic",
            "--scope",
            "openid profile email offline_access",
            "--id-token-alg",
            "ES256",
        )
        rs256 = pool.submit(
            create,
            "Native app",
            "--redirect-uri",
            redirect_uri,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--grant-type",
            DEVICE_GRANT,
            "--auth-method",
            "none",
            "--id-token-alg",
            "RS256",
            "--first-party",
        )
        rs = pool.submit(
            create,
            "Resource server",
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "client_secret_post",
            "--scope",
            "roles",
            "--resource-server",
        )
        jwt_client = pool.submit(
            create,
            "Service with a key",
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            str(jwks_path),
            "--scope",
            "roles",
        )
    site = RPSite(server.result(), user.result().stdout.split()[0])
    site.clients["web"] = RegisteredClient(
        web.result()["client_id"],
        "client_secret_basic",
        web.result()["client_secret"],
        redirect_uri,
        logout_uri,
        "ES256",
    )
    site.clients["rs256"] = RegisteredClient(
        rs256.result()["client_id"], "none", None, redirect_uri, None, "RS256"
    )
    site.clients["rs"] = RegisteredClient(
        rs.result()["client_id"], "client_secret_post", rs.result()["client_secret"]
    )
    site.clients["device"] = site.clients["rs256"]  # the same native app on a TV
    site.clients["jwt"] = RegisteredClient(
        jwt_client.result()["client_id"], "private_key_jwt", private_jwk=private_jwk
    )
    return site


def approve_device(site: RPSite, user_code: str) -> None:
    """The user signs in on another device, enters the code at /device and allows it."""
    with requests.Session() as browser:
        signed_in = sign_in(browser, site.issuer, USER_EMAIL, PASSWORD)
        assert signed_in.url == site.issuer + "/account", signed_in.text
        page = post_form(
            browser,
            site.issuer + "/device",
            {"user_code": user_code},
            page_url=f"{site.issuer}/device?user_code={user_code}",
        )
        assert page.status_code == 200, page.text
        assert 'action="/device/confirm"' in page.text, page.text
        done = browser.post(
            site.issuer + "/device/confirm",
            data={
                "csrf_token": _hidden(page.text, "csrf_token"),
                "user_code": user_code,
                "decision": "allow",
            },
            timeout=10,
        )
    assert done.status_code == 200, done.text
    assert "allowed" in done.text.lower() or "connected" in done.text.lower(), done.text


# The browser side of the authorization endpoint ----------------------------------------


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
    assert match, f"no hidden field {name} in:\n{html[:2000]}"
    return unescape(match.group(1))


def walk_authorization(browser: requests.Session, site: RPSite, url: str) -> str:
    """Play the user at the authorization endpoint: sign in and allow consent when asked,
    follow the server's redirects, and return the URL the server finally sends the browser
    to outside the issuer (the client's redirect URI) without requesting it."""
    issuer = urlsplit(site.issuer)
    response = browser.get(url, allow_redirects=False, timeout=10)
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if urlsplit(location).netloc != issuer.netloc:
                return location
            response = browser.get(location, allow_redirects=False, timeout=10)
            continue
        html = response.text
        if response.status_code == 200 and 'action="/sign-in"' in html:
            response = browser.post(
                site.issuer + "/sign-in",
                data={
                    "csrf_token": _hidden(html, "csrf_token"),
                    "next": _hidden(html, "next"),
                    "email": USER_EMAIL,
                    "password": PASSWORD,
                },
                allow_redirects=False,
                timeout=10,
            )
            continue
        if response.status_code == 200 and 'action="/authorize/consent"' in html:
            response = browser.post(
                site.issuer + "/authorize/consent",
                data={
                    "csrf_token": _hidden(html, "csrf_token"),
                    "request_id": _hidden(html, "request_id"),
                    "decision": "allow",
                },
                allow_redirects=False,
                timeout=10,
            )
            continue
        raise AssertionError(f"unexpected page {response.status_code} at {response.url}:\n{html}")
    raise AssertionError("too many steps at the authorization endpoint")
