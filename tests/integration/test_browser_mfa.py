"""Second factors in real Chromium: setting up an authenticator app from the security page,
signing in to a relying party that asks for two factors (acr_values) with a code from it,
and signing in with a recovery code. The relying party redeems the code and reads the amr
and acr of the ID token. Every page must log no console error (CSP violations included).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.callback_server import CallbackServer
from tests.integration.conftest import Harness, Server
from tests.integration.test_browser_flows import (
    Client,
    Tab,
    arrive,
    assert_code,
    authorize_url,
    browser,
    fill_sign_in,
    jwt_claims,
    new_request,
    redeem,
    rp,
)

pytestmark = pytest.mark.slow
__all__ = ["browser", "rp"]  # module fixtures shared with the other browser flows

TWO_FACTORS = "urn:identity:loa:2fa"


@dataclass(frozen=True)
class Site:
    server: Server
    rp: CallbackServer
    first: Client

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def redirect_uri(self) -> str:
        return self.rp.url + "/cb"


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness, rp: CallbackServer) -> Site:
    # The relying party listens on loopback over http: allowed for logout tokens here only.
    instance = module_identity_factory.instance(
        IDENTITY_RATELIMIT_SIGN_IN="200/minute", IDENTITY_BACKCHANNEL_LOGOUT_ALLOW_PRIVATE="true"
    )
    instance.cli("init")
    created = json.loads(
        instance.cli(
            "clients", "create", "--name", "Intranet", "--first-party",
            "--redirect-uri", rp.url + "/cb",
            "--backchannel-logout-uri", rp.url + "/backchannel", "--json",
        ).stdout
    )  # fmt: skip
    client = Client("Intranet", created["client_id"], created["client_secret"])
    return Site(module_identity_factory.server(instance), rp, client)


@pytest.fixture
def new_tab(browser: Any, site: Site) -> Iterator[Callable[[], Tab]]:
    tabs: list[Tab] = []

    def open_tab() -> Tab:
        tab = Tab(browser, site.url)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.context.close()
    for tab in tabs:
        tab.assert_clean()


def away_from_a_step_boundary() -> None:
    """A code typed in the last moments of its 30-second step may reach the server in the
    next one: wait for a fresh step instead."""
    if time.time() % 30 > 26:
        time.sleep(30 - time.time() % 30 + 0.1)


def set_up_authenticator(tab: Tab, site: Site, email: str) -> tuple[pyotp.TOTP, list[str]]:
    """Sign in with the password, then set up an app from the security page; returns the
    app (as a pyotp.TOTP from the key shown) and the recovery codes."""
    page = tab.page
    page.goto("/sign-in")
    fill_sign_in(tab, email)
    expect(page).to_have_url(site.url + "/account")
    page.get_by_role("link", name="Security and sign-in").click()
    expect(page.locator("main")).to_contain_text("Off: only your password protects this account.")
    page.get_by_role("link", name="Set up an authenticator app").click()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    away_from_a_step_boundary()
    # The previous step's code (one step of drift is allowed): the current step's code is
    # then still unused for the sign-in that follows.
    page.get_by_label("Code from the app").fill(totp.at(time.time() - 30))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I saved them, back to security").click()
    expect(page.locator("main")).to_contain_text("On: signing in asks for a code")
    page.context.clear_cookies()  # a new visit: signed out
    return totp, codes


def test_totp_sign_in_to_a_client_asking_for_two_factors(
    new_tab: Callable[[], Tab], site: Site, module_identity_factory: Harness
) -> None:
    email = "tess@example.org"
    site.server.instance.create_user(email, PASSWORD)
    tab = new_tab()
    totp, _ = set_up_authenticator(tab, site, email)

    auth = new_request(site, site.first, acr_values=TWO_FACTORS)  # type: ignore[arg-type]
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab, email)
    expect(tab.page.get_by_role("heading", name="Enter your code")).to_be_visible()
    away_from_a_step_boundary()
    tab.page.get_by_label("Code").fill(totp.now())
    tab.page.get_by_role("button", name="Continue").click()
    code = assert_code(arrive(tab, site, auth.state), site, auth)  # type: ignore[arg-type]
    claims = jwt_claims(redeem(site, auth, code)["id_token"])  # type: ignore[arg-type]
    assert claims["amr"] == ["pwd", "otp"]
    assert claims["acr"] == TWO_FACTORS


def test_recovery_code_sign_in(
    new_tab: Callable[[], Tab], site: Site, module_identity_factory: Harness
) -> None:
    email = "rex@example.org"
    site.server.instance.create_user(email, PASSWORD)
    tab = new_tab()
    _, codes = set_up_authenticator(tab, site, email)

    auth = new_request(site, site.first)  # type: ignore[arg-type]
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab, email)
    tab.page.get_by_role("link", name="Use a recovery code instead").click()
    expect(tab.page.get_by_role("heading", name="Use a recovery code")).to_be_visible()
    tab.page.get_by_label("Recovery code").fill(codes[3])
    tab.page.get_by_role("button", name="Continue").click()
    code = assert_code(arrive(tab, site, auth.state), site, auth)  # type: ignore[arg-type]
    claims = jwt_claims(redeem(site, auth, code)["id_token"])  # type: ignore[arg-type]
    assert claims["amr"] == ["pwd", "otp"]

    # The code is spent: the security page counts one fewer.
    tab.page.goto("/account/security")
    expect(tab.page.get_by_test_id("recovery-codes-left")).to_have_text(
        re.compile(r"^9 of 10 unused")
    )


def test_SESS_09_sessions_page_signs_out_another_browser(
    new_tab: Callable[[], Tab], site: Site
) -> None:
    email = "sam@example.org"
    site.server.instance.create_user(email, PASSWORD)
    laptop, phone = new_tab(), new_tab()
    for tab in (laptop, phone):
        tab.page.goto("/sign-in")
        fill_sign_in(tab, email)
        expect(tab.page).to_have_url(site.url + "/account")
    page = laptop.page
    page.get_by_role("link", name="Security and sign-in").click()
    page.get_by_role("link", name="Your sessions").click()
    sessions = page.get_by_test_id("session")
    expect(sessions).to_have_count(2)
    expect(sessions.first).to_contain_text("this browser")
    sessions.nth(1).get_by_role("button", name="Sign out this browser").click()
    expect(page.locator("main")).to_contain_text("That browser is signed out.")
    expect(page.get_by_test_id("session")).to_have_count(1)
    phone.page.reload()
    expect(phone.page).to_have_url(re.compile(r"/sign-in\?next="))


# Passkeys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passkey_site(module_identity_factory: Harness, rp: CallbackServer) -> Site:
    """A server whose issuer is http://localhost:PORT: WebAuthn refuses an IP address as
    the relying party id."""
    instance = module_identity_factory.instance(IDENTITY_RATELIMIT_SIGN_IN="200/minute")
    instance.cli("init")
    created = json.loads(
        instance.cli(
            "clients", "create", "--name", "Intranet", "--first-party",
            "--redirect-uri", rp.url + "/cb", "--json",
        ).stdout
    )  # fmt: skip
    client = Client("Intranet", created["client_id"], created["client_secret"])
    server = module_identity_factory.server(instance, host_name="localhost")
    return Site(server, rp, client)


def virtual_authenticator(tab: Tab) -> Any:
    """A platform authenticator that holds passkeys and verifies the user (Chromium's
    DevTools WebAuthn domain): what a laptop with a fingerprint reader offers."""
    cdp = tab.context.new_cdp_session(tab.page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp


def test_passkey_registered_then_used_alone_and_as_a_second_factor(
    browser: Any, passkey_site: Site
) -> None:
    site = passkey_site
    email = "pia@example.org"
    site.server.instance.create_user(email, PASSWORD)
    tab = Tab(browser, site.url)
    try:
        virtual_authenticator(tab)
        page = tab.page
        # Register: signed in with the password, from the security page.
        page.goto("/sign-in")
        fill_sign_in(tab, email)
        expect(page).to_have_url(site.url + "/account")
        page.goto("/account/security")
        page.get_by_label("Name for a new passkey").fill("Work laptop")
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator("main")).to_contain_text("Your passkey is registered.")
        expect(page.get_by_test_id("passkey")).to_contain_text("Work laptop")
        page.context.clear_cookies()

        # A passkey alone signs in (the device verified the user: two factors).
        auth = new_request(site, site.first)  # type: ignore[arg-type]
        page.goto(authorize_url(auth))
        page.get_by_role("button", name="Sign in with a passkey").click()
        code = assert_code(arrive(tab, site, auth.state), site, auth)  # type: ignore[arg-type]
        claims = jwt_claims(redeem(site, auth, code)["id_token"])  # type: ignore[arg-type]
        assert claims["amr"] == ["hwk", "mfa"]
        assert claims["acr"] == TWO_FACTORS
        page.context.clear_cookies()

        # After the password, the passkey is the second step.
        auth = new_request(site, site.first, acr_values=TWO_FACTORS)  # type: ignore[arg-type]
        page.goto(authorize_url(auth))
        fill_sign_in(tab, email)
        expect(page.get_by_role("heading", name="Use your passkey")).to_be_visible()
        page.get_by_role("button", name="Use a passkey or security key").click()
        code = assert_code(arrive(tab, site, auth.state), site, auth)  # type: ignore[arg-type]
        claims = jwt_claims(redeem(site, auth, code)["id_token"])  # type: ignore[arg-type]
        assert claims["amr"] == ["pwd", "hwk", "mfa"]
        assert claims["acr"] == TWO_FACTORS

        # Renamed, then removed with the password.
        page.goto("/account/security")
        page.get_by_label("New name").fill("Old laptop")
        page.get_by_role("button", name="Rename").click()
        expect(page.get_by_test_id("passkey")).to_contain_text("Old laptop")
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_role("button", name="Remove this passkey").click()
        expect(page.locator("main")).to_contain_text("The passkey is removed.")
        expect(page.get_by_test_id("passkey")).to_have_count(0)
        tab.assert_clean()
    finally:
        tab.context.close()


def test_OIDC_71_signing_out_reaches_the_relying_partys_back_channel(
    new_tab: Callable[[], Tab], site: Site
) -> None:
    """Signed in to the app in Chromium, the user signs out at identity: the app's
    back-channel endpoint on loopback receives a logout token for that session."""
    email = "bea@example.org"
    site.server.instance.create_user(email, PASSWORD)
    tab = new_tab()
    auth = new_request(site, site.first)  # type: ignore[arg-type]
    tab.page.goto(authorize_url(auth))
    fill_sign_in(tab, email)
    code = assert_code(arrive(tab, site, auth.state), site, auth)  # type: ignore[arg-type]
    id_token = jwt_claims(redeem(site, auth, code)["id_token"])  # type: ignore[arg-type]

    tab.page.goto("/sign-out")
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.locator("main")).to_contain_text("You are signed out.")
    received = site.rp.wait_for(
        lambda r: r.path == "/backchannel" and "logout_token" in r.form, timeout=20
    )
    claims = jwt_claims(received.form["logout_token"])
    assert claims["sid"] == id_token["sid"] and claims["sub"] == id_token["sub"]
    assert claims["aud"] == site.first.client_id
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
