"""The console's user pages in real Chromium: an administrator searches a user, opens them,
disables and enables them and gives them a role; creates a user (mailed a link to choose a
password), invites one, and erases one with a fresh proof and the typed address. Every
page passes axe-core and fits 360 px."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server, outbox_mail
from tests.integration.console import ADMIN, PLAIN, check_page, console_server, open_console
from tests.integration.test_browser_flows import browser

pytestmark = pytest.mark.slow
__all__ = ["browser"]


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return console_server(module_identity_factory)


def flash(page: Any, text: str) -> None:
    expect(page.get_by_role("status").filter(has_text=text)).to_be_visible()


def test_search_open_disable_enable_and_give_a_role(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    page.get_by_role("navigation", name="Admin console").get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    check_page(page)

    page.get_by_label("Email or name").fill("plain")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name=PLAIN).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(PLAIN)
    check_page(page)

    page.get_by_role("button", name="Disable").click()
    flash(page, f"{PLAIN} is disabled")
    expect(page.locator(".subtitle .badge.bad")).to_have_text("disabled")
    page.get_by_role("button", name="Enable").click()
    flash(page, f"{PLAIN} is enabled")

    page.get_by_label("Give a role").select_option("auditor")
    page.get_by_role("button", name="Give role").click()
    flash(page, "now has the role auditor")
    expect(page.get_by_role("button", name="Take back auditor")).to_be_visible()
    check_page(page)
    tab.context.close()
    tab.assert_clean()


def test_create_invite_and_erase(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    page.goto("/admin/users")

    page.get_by_role("link", name="Invite").click()
    expect(page.get_by_role("heading", name="Invite a user", level=1)).to_be_visible()
    check_page(page)
    page.get_by_role("textbox", name="Email").fill("guest@example.org")
    page.get_by_role("button", name="Create invitation").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "We mailed this link to guest@example.org"
    )
    expect(page.get_by_test_id("invitation-link")).to_contain_text("/register?invite=")
    check_page(page)  # the long link wraps at 360 px

    page.goto("/admin/users")
    page.get_by_role("link", name="Create user").click()
    check_page(page)
    page.get_by_role("textbox", name="Email").fill("temp@example.org")
    page.get_by_label("Name").fill("Temporary")
    page.get_by_role("button", name="Create user").click()
    flash(page, "temp@example.org was created and mailed a link")
    mail = outbox_mail(server.instance, "temp@example.org", "Choose a new password")
    assert "/reset-password/" in mail.get_content()

    page.locator("#erase-confirm").fill("temp@example.org")
    page.locator("#erase-reauth").fill(PASSWORD)
    page.get_by_role("button", name="Erase this user").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    flash(page, "The user is erased (receipt")
    check_page(page)
    tab.context.close()
    tab.assert_clean()
