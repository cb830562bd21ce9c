"""The account cycle in real Chromium (Playwright) against the real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness, Server, link_in, outbox_mail, require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "frank@example.org"
FIRST_PASSWORD = "frank's first passphrase"
SECOND_PASSWORD = "frank's second passphrase"
THIRD_PASSWORD = "frank's third passphrase"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return module_identity_factory.server()


@pytest.fixture
def page(browser, server: Server) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context; console errors (CSP violations included) and failed
    sub-resources fail the test."""
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message) -> None:  # type: ignore[no-untyped-def]
        # A page answered with an error status logs "Failed to load resource"; the
        # response handler below names the URL instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    def on_response(response) -> None:  # type: ignore[no-untyped-def]
        # The browser asks for /favicon.ico on its own; the server has none (yet).
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def sign_in(page, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/sign-in")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_account_cycle_in_a_browser(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    """Register, verify, sign in, change password, sign out, reset it, sign in again."""
    from playwright.sync_api import expect

    page.goto("/register")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Name (optional)").fill("Frank")
    page.get_by_label("Password", exact=True).fill(FIRST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(server.url + "/register/sent")
    expect(page.get_by_role("heading")).to_have_text("Check your inbox")

    page.goto(link_in(outbox_mail(server.instance, EMAIL, "Verify your email address")))
    page.get_by_role("button", name="Verify my email address").click()
    expect(page).to_have_url(server.url + "/sign-in")
    expect(page.get_by_role("status")).to_contain_text("Your email address is verified")

    sign_in(page, FIRST_PASSWORD)
    expect(page).to_have_url(server.url + "/account")
    expect(page.locator("dl.facts")).to_contain_text(EMAIL)

    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Current password").fill(FIRST_PASSWORD)
    page.get_by_label("New password").fill(SECOND_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(server.url + "/account")
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    outbox_mail(server.instance, EMAIL, "Your password was changed")

    page.locator("header").get_by_role("link", name="Sign out").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.url + "/sign-in")
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto("/account")
    expect(page).to_have_url(server.url + "/sign-in?next=/account")

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button", name="Send reset link").click()
    expect(page).to_have_url(server.url + "/forgot-password/sent")

    page.goto(link_in(outbox_mail(server.instance, EMAIL, "Choose a new password")))
    page.get_by_label("New password").fill(THIRD_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page).to_have_url(server.url + "/sign-in")
    expect(page.get_by_role("status")).to_contain_text("Sign in with the new password")

    sign_in(page, SECOND_PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("not correct")
    sign_in(page, THIRD_PASSWORD)
    expect(page).to_have_url(server.url + "/account")


def test_sign_in_page_fits_a_phone(browser, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """At 390 px wide the sign-in page has no horizontal overflow (screenshot kept)."""
    context = browser.new_context(base_url=server.url, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto("/sign-in")
        screenshot = tmp_path / "sign-in-390.png"
        page.screenshot(path=str(screenshot), full_page=True)
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.body.scrollWidth]"
        )
    finally:
        context.close()
    assert screenshot.stat().st_size > 1000
    scroll_width, client_width, body_width = widths
    assert client_width == 390
    assert scroll_width <= client_width, widths
    assert body_width <= client_width, widths
