"""Every flow a person performs, in real Chromium (Playwright) against a real server.

One server for the module, with clients registered through ``identity clients create``:
a confidential third-party web app (consent page), a first-party app (no consent page, a
post-logout redirect URI) and a public device-flow app. Their redirect URIs point at a small
relying party listening on 127.0.0.1 (``callback_server.py``) that records what the
browser brings back. Each test fails on any console error of the pages, CSP violations
included: Chromium applies ``form-action`` to the redirects that follow a form submission,
so a form whose answer ends at the client needs the client's origin in that directive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORD
from tests.integration.callback_server import CallbackServer, Received
from tests.integration.conftest import (
    Harness,
    Server,
    link_in,
    outbox_mail,
    post_form,
    require,
)
from tests.integration.conftest import sign_in as http_sign_in
from tests.integration.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow

EMAIL = "ada@example.org"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Every test signs in afresh from one address: well above the default 10 a minute. A
# one-second device polling interval keeps the device flow short.
SERVER_ENV = {
    "IDENTITY_RATELIMIT_SIGN_IN": "200/minute",
    "IDENTITY_DEVICE_CODE_INTERVAL": "1",
}


@dataclass(frozen=True)
class Client:
    name: str
    client_id: str
    client_secret: str | None


@dataclass(frozen=True)
class Site:
    server: Server
    rp: CallbackServer
    web: Client  # third party, client_secret_basic: users see the consent page
    first: Client  # first party, client_secret_basic, a post-logout redirect URI
    tv: Client  # public (none), device flow only

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def redirect_uri(self) -> str:
        return self.rp.url + "/cb"

    @property
    def logout_uri(self) -> str:
        return self.rp.url + "/signed-out"


# Fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def rp() -> Iterator[CallbackServer]:
    with CallbackServer() as server:
        yield server


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness, rp: CallbackServer) -> Site:
    instance = module_identity_factory.instance(**SERVER_ENV)
    instance.cli("init")
    redirect_uri = rp.url + "/cb"

    def create(name: str, *args: str) -> Client:
        result = instance.cli("clients", "create", "--name", name, *args, "--json")
        created = json.loads(result.stdout)
        return Client(name, created["client_id"], created.get("client_secret"))

    # Each command is a Python process of its own: overlap them with the server's start.
    with ThreadPoolExecutor(max_workers=5) as pool:
        server = pool.submit(module_identity_factory.server, instance)
        user = pool.submit(instance.create_user, EMAIL, PASSWORD)
        web = pool.submit(create, "Web RP", "--redirect-uri", redirect_uri)
        first = pool.submit(
            create,
            "Intranet",
            "--first-party",
            "--redirect-uri",
            redirect_uri,
            "--post-logout-redirect-uri",
            rp.url + "/signed-out",
        )
        tv = pool.submit(
            create,
            "TV",
            "--auth-method",
            "none",
            "--grant-type",
            DEVICE_GRANT,
            "--scope",
            "openid profile",
        )
        user.result()
    return Site(server.result(), rp, web.result(), first.result(), tv.result())


class Tab:
    """A fresh browser context and its page, with every console error, failed response
    and script error it saw, and the documents it showed (redirects show none)."""

    def __init__(self, browser: Any, base_url: str, **options: Any) -> None:
        self.context = browser.new_context(base_url=base_url, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.shown: list[str] = []
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("framenavigated", self._navigated)

    def _console(self, message: Any) -> None:
        # A page answered with an error status logs "Failed to load resource"; _response
        # names its URL instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console at {self.page.url}: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.errors.append(f"{response.status} {response.request.method} {response.url}")

    def _navigated(self, frame: Any) -> None:
        if frame == self.page.main_frame:
            self.shown.append(frame.url)

    def shown_paths(self) -> list[str]:
        return [urlsplit(url).path for url in self.shown]

    def take_errors(self) -> list[str]:
        """The errors not reported yet (each is reported once, not again at teardown)."""
        errors, self.errors = self.errors, []
        return errors

    def assert_clean(self) -> None:
        errors = self.take_errors()
        assert errors == [], "\n".join(errors)


@pytest.fixture
def new_tab(browser: Any, site: Site) -> Iterator[Callable[..., Tab]]:
    """Opens fresh browser contexts; at the end closes them and fails on errors that no
    assertion of the test reported yet."""
    tabs: list[Tab] = []

    def open_tab(**options: Any) -> Tab:
        tab = Tab(browser, site.url, **options)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.context.close()
    for tab in tabs:
        tab.assert_clean()


# The relying party's side ---------------------------------------------------------------


@dataclass(frozen=True)
class AuthRequest:
    """What a relying party keeps while the user is away at the authorization server."""

    client: Client
    params: dict[str, str]
    verifier: str

    @property
    def state(self) -> str:
        return self.params["state"]


def new_request(site: Site, client: Client, **extra: str) -> AuthRequest:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": site.redirect_uri,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **extra,
    }
    return AuthRequest(client, params, verifier)


def authorize_url(auth: AuthRequest) -> str:
    return "/authorize?" + urlencode(auth.params)


def redeem(site: Site, auth: AuthRequest, code: str) -> dict[str, Any]:
    """The relying party exchanges the code (with its secret and PKCE verifier)."""
    response = requests.post(
        site.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": site.redirect_uri,
            "code_verifier": auth.verifier,
        },
        auth=(auth.client.client_id, auth.client.client_secret or ""),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    claims = jwt_claims(tokens["id_token"])
    assert claims["iss"] == site.url
    assert claims["aud"] == auth.client.client_id
    assert claims["nonce"] == auth.params["nonce"]
    return tokens


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the token came straight from the token endpoint)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def forget_consent(site: Site, client: Client) -> None:
    """Withdraw the user's consent to ``client`` (over HTTP), so the consent page shows."""
    with requests.Session() as session:
        assert http_sign_in(session, site.url, EMAIL, PASSWORD).url == site.url + "/account"
        post_form(
            session,
            site.url + "/account/apps/withdraw",
            {"client_id": client.client_id},
            page_url=site.url + "/sign-out",  # any page with the session's CSRF token
        )


# The person's side ----------------------------------------------------------------------


def fill_sign_in(tab: Tab, email: str = EMAIL, password: str = PASSWORD) -> None:
    """On the sign-in page: enter the credentials and press Sign in."""
    page = tab.page
    expect(page).to_have_url(re.compile(r"/sign-in(\?|$)"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def answer_consent(tab: Tab, client: Client, decision: str) -> None:
    """On the consent page: check whom it is for, then press Allow or Deny."""
    page = tab.page
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"{client.name} wants to access your account"
    )
    expect(page.locator("main")).to_contain_text(f"Signed in as {EMAIL}")
    page.get_by_role("button", name=decision, exact=True).click()


def sign_in_at_identity(tab: Tab, site: Site) -> None:
    """Sign in on identity's own page, outside any authorization request."""
    tab.page.goto("/sign-in")
    fill_sign_in(tab)
    expect(tab.page).to_have_url(site.url + "/account")


def arrive(tab: Tab, site: Site, state: str, path: str = "/cb") -> Received:
    """Wait until the browser shows the relying party's ``path``; return the request that
    brought it there with ``state``, and check the pages logged no error on the way."""
    target = re.compile("^" + re.escape(site.rp.url + path) + r"(\?|$)")
    try:
        expect(tab.page).to_have_url(target)
    except AssertionError as error:
        problems = "\n".join(tab.take_errors()) or "no console error"
        raise AssertionError(
            f"the browser did not reach {site.rp.url}{path}:\n{error}\n{problems}"
        ) from None
    received = site.rp.wait_for(lambda r: r.path == path and r.params.get("state") == state)
    tab.assert_clean()
    return received


def assert_code(received: Received, site: Site, auth: AuthRequest) -> str:
    params = received.params
    assert "error" not in params, params
    assert params["state"] == auth.state
    assert params["iss"] == site.url  # RFC 9207
    assert params["code"]
    return params["code"]


# The flows ------------------------------------------------------------------------------


def test_code_flow_on_first_visit(new_tab: Callable[..., Tab], site: Site) -> None:
    """A first visit signs in, consents, and returns a code the client redeems with PKCE."""
    forget_consent(site, site.web)
    tab = new_tab()
    auth = new_request(site, site.web)
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    answer_consent(tab, site.web, "Allow")
    received = arrive(tab, site, auth.state)
    assert received.method == "GET"
    assert tab.shown_paths()[0] == "/sign-in"
    assert tab.shown_paths()[1].startswith("/authorize/resume/")  # the consent page

    tokens = redeem(site, auth, assert_code(received, site, auth))
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["scope"].split()) == {"openid", "profile", "email"}
    userinfo = requests.get(
        site.url + "/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["email"] == EMAIL


def test_consent_is_remembered_in_a_new_browser(new_tab: Callable[..., Tab], site: Site) -> None:
    """After consenting once, a new browser context only signs in and sees no consent page."""
    forget_consent(site, site.web)
    first = new_tab()
    auth = new_request(site, site.web)
    first.page.goto(authorize_url(auth))
    fill_sign_in(first)
    answer_consent(first, site.web, "Allow")
    assert_code(arrive(first, site, auth.state), site, auth)
    first.context.close()

    tab = new_tab()
    auth = new_request(site, site.web)
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    received = arrive(tab, site, auth.state)
    assert tab.shown_paths() == ["/sign-in", "/cb"]
    redeem(site, auth, assert_code(received, site, auth))


def test_signed_in_and_consented_sees_no_form(new_tab: Callable[..., Tab], site: Site) -> None:
    """A signed-in user who already consented goes straight back to the client."""
    forget_consent(site, site.web)
    tab = new_tab()
    auth = new_request(site, site.web)
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    answer_consent(tab, site.web, "Allow")
    assert_code(arrive(tab, site, auth.state), site, auth)

    tab.shown.clear()
    auth = new_request(site, site.web)
    tab.page.goto(authorize_url(auth))
    received = arrive(tab, site, auth.state)
    assert tab.shown_paths() == ["/cb"]  # redirects only: no page of identity's
    redeem(site, auth, assert_code(received, site, auth))


def test_prompt_login_asks_to_sign_in_again(new_tab: Callable[..., Tab], site: Site) -> None:
    """prompt=login shows the sign-in form to a signed-in user, then returns a code."""
    tab = new_tab()
    sign_in_at_identity(tab, site)
    tab.shown.clear()
    auth = new_request(site, site.first, prompt="login")
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    received = arrive(tab, site, auth.state)
    assert tab.shown_paths() == ["/sign-in", "/cb"]
    redeem(site, auth, assert_code(received, site, auth))


def test_max_age_zero_asks_to_sign_in_again(new_tab: Callable[..., Tab], site: Site) -> None:
    """max_age=0 shows the sign-in form to a signed-in user, then returns a code."""
    tab = new_tab()
    sign_in_at_identity(tab, site)
    tab.shown.clear()
    auth = new_request(site, site.first, max_age="0")
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    received = arrive(tab, site, auth.state)
    assert tab.shown_paths() == ["/sign-in", "/cb"]
    tokens = redeem(site, auth, assert_code(received, site, auth))
    assert "auth_time" in jwt_claims(tokens["id_token"])


def test_form_post_response_mode(new_tab: Callable[..., Tab], site: Site) -> None:
    """With response_mode=form_post identity's script posts code and state to the client."""
    forget_consent(site, site.web)
    tab = new_tab()
    auth = new_request(site, site.web, response_mode="form_post")
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    script = site.url + "/static/form_post.js"
    with tab.page.expect_response(lambda response: response.url.startswith(script)) as loaded:
        answer_consent(tab, site.web, "Allow")
    assert loaded.value.status == 200
    received = arrive(tab, site, auth.state)
    # The consent form's answer is the page whose script posts the response to the client.
    assert tab.shown_paths()[-2:] == ["/authorize/consent", "/cb"]
    assert received.method == "POST"
    assert received.query == {}  # nothing in the URL
    assert set(received.form) == {"code", "state", "iss"}
    redeem(site, auth, assert_code(received, site, auth))


def test_pushed_authorization_request(new_tab: Callable[..., Tab], site: Site) -> None:
    """A request pushed to /oauth/par is continued in the browser by its request_uri."""
    auth = new_request(site, site.first)
    pushed = requests.post(
        site.url + "/oauth/par",
        data=auth.params,
        auth=(site.first.client_id, site.first.client_secret or ""),
        timeout=10,
    )
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert request_uri.startswith("urn:ietf:params:oauth:request_uri:")

    tab = new_tab()
    tab.page.goto(
        "/authorize?" + urlencode({"client_id": site.first.client_id, "request_uri": request_uri})
    )
    fill_sign_in(tab)
    received = arrive(tab, site, auth.state)
    assert tab.shown_paths() == ["/sign-in", "/cb"]
    redeem(site, auth, assert_code(received, site, auth))


def test_device_flow(new_tab: Callable[..., Tab], site: Site) -> None:
    """The user opens the verification link, signs in and allows; the device gets tokens."""
    started = requests.post(
        site.url + "/oauth/device_authorization",
        data={"client_id": site.tv.client_id, "scope": "openid profile"},
        timeout=10,
    )
    assert started.status_code == 200, started.text
    device = started.json()
    assert device["verification_uri"] == site.url + "/device"
    token_request = {
        "grant_type": DEVICE_GRANT,
        "device_code": device["device_code"],
        "client_id": site.tv.client_id,
    }
    pending = requests.post(site.url + "/oauth/token", data=token_request, timeout=10)
    last_poll = time.monotonic()
    assert pending.json().get("error") == "authorization_pending", pending.text

    tab = new_tab()
    page = tab.page
    page.goto(device["verification_uri_complete"])
    fill_sign_in(tab)
    expect(page.get_by_role("heading", level=1)).to_have_text("Connect a device")
    expect(page.get_by_label("Code shown on your device")).to_have_value(device["user_code"])
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Allow TV on your device?")
    expect(page.locator("code")).to_have_text(device["user_code"])
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Device connected")
    tab.assert_clean()

    # The device polls no faster than the interval it was given (RFC 8628 section 3.5).
    deadline = time.monotonic() + 30
    while True:
        time.sleep(max(0.0, last_poll + device["interval"] - time.monotonic()))
        answer = requests.post(site.url + "/oauth/token", data=token_request, timeout=10)
        last_poll = time.monotonic()
        if answer.status_code == 200:
            break
        assert answer.json().get("error") == "authorization_pending", answer.text
        assert time.monotonic() < deadline, "no tokens after 30 s of polling"
    tokens = answer.json()
    assert tokens["access_token"]
    assert jwt_claims(tokens["id_token"])["aud"] == site.tv.client_id


def test_rp_initiated_logout(new_tab: Callable[..., Tab], site: Site) -> None:
    """Logout with an ID token hint returns to the registered URI and ends the session."""
    tab = new_tab()
    auth = new_request(site, site.first)
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    tokens = redeem(site, auth, assert_code(arrive(tab, site, auth.state), site, auth))

    logout = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": site.logout_uri,
        "state": "xyz",
    }
    tab.page.goto("/logout?" + urlencode(logout))
    received = arrive(tab, site, "xyz", path="/signed-out")
    assert received.method == "GET"
    assert received.query == {"state": "xyz"}

    tab.page.goto(site.url + "/account")
    expect(tab.page).to_have_url(site.url + "/sign-in?next=/account")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_denied_consent(new_tab: Callable[..., Tab], site: Site) -> None:
    """Pressing Deny sends the browser back with error=access_denied and the state."""
    forget_consent(site, site.web)
    tab = new_tab()
    auth = new_request(site, site.web)
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab)
    answer_consent(tab, site.web, "Deny")
    params = arrive(tab, site, auth.state).params
    assert params["error"] == "access_denied"
    assert params["state"] == auth.state
    assert params["iss"] == site.url
    assert "code" not in params


def test_withdrawn_access_asks_for_consent_again(new_tab: Callable[..., Tab], site: Site) -> None:
    """After Withdraw access on the connected apps page, the app must ask for consent again."""
    forget_consent(site, site.web)
    tab = new_tab()
    page = tab.page
    auth = new_request(site, site.web)
    page.goto(authorize_url(auth))
    fill_sign_in(tab)
    answer_consent(tab, site.web, "Allow")
    assert_code(arrive(tab, site, auth.state), site, auth)

    page.goto("/account/apps")
    app = page.locator("section.app").filter(has_text=site.web.name)
    app.get_by_role("button", name="Withdraw access").click()
    expect(page).to_have_url(site.url + "/account/apps")
    expect(page.get_by_role("status")).to_contain_text("Access withdrawn")
    expect(page.locator("section.app").filter(has_text=site.web.name)).to_have_count(0)

    auth = new_request(site, site.web)
    page.goto(authorize_url(auth))
    answer_consent(tab, site.web, "Allow")
    redeem(site, auth, assert_code(arrive(tab, site, auth.state), site, auth))


def test_account_cycle_at_phone_width(new_tab: Callable[..., Tab], site: Site) -> None:
    """Register, verify, sign in, change password and sign out at 360 px, never too wide."""
    email = "grace@example.org"
    first_password = "grace's first passphrase"
    second_password = "grace's second passphrase"
    tab = new_tab(viewport={"width": 360, "height": 740})
    page = tab.page

    def fits() -> None:
        scroll, client = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert client == 360
        assert scroll <= client, f"{page.url} scrolls sideways: {scroll} px in {client} px"

    page.goto("/register")
    fits()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Name (optional)").fill("Grace")
    page.get_by_label("Password", exact=True).fill(first_password)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(site.url + "/register/sent")
    expect(page.get_by_role("heading")).to_have_text("Check your inbox")
    fits()

    page.goto(link_in(outbox_mail(site.server.instance, email, "Verify your email address")))
    expect(page.get_by_role("heading")).to_have_text("Verify your email")
    fits()
    page.get_by_role("button", name="Verify my email address").click()
    expect(page).to_have_url(site.url + "/sign-in")
    expect(page.get_by_role("status")).to_contain_text("Your email address is verified")
    fits()

    fill_sign_in(tab, email, first_password)
    expect(page).to_have_url(site.url + "/account")
    expect(page.locator("dl.facts")).to_contain_text(email)
    fits()

    page.locator("main").get_by_role("link", name="Connected apps").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connected apps")
    fits()
    page.get_by_role("link", name="Back to your account").click()
    expect(page).to_have_url(site.url + "/account")

    page.locator("main").get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change password")
    fits()
    page.get_by_label("Current password").fill(first_password)
    page.get_by_label("New password").fill(second_password)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(site.url + "/account")
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    fits()

    page.locator("header").get_by_role("link", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign out")
    fits()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(site.url + "/sign-in")
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    fits()

    fill_sign_in(tab, email, second_password)
    expect(page).to_have_url(site.url + "/account")
    fits()
    tab.assert_clean()
