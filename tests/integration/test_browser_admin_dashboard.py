"""The console's dashboard in real Chromium: an operator of each built-in role opens it and
sees only the pages their role allows; the page passes axe-core and fits 360 px."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import Harness, Server
from tests.integration.console import (
    ADMIN,
    AUDITOR,
    USER_MANAGER,
    check_page,
    console_server,
    open_console,
)
from tests.integration.test_browser_flows import browser

pytestmark = pytest.mark.slow
__all__ = ["browser"]


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return console_server(module_identity_factory)


@pytest.mark.parametrize("email", [ADMIN, USER_MANAGER, AUDITOR])
def test_each_role_opens_the_dashboard(browser: Any, server: Server, email: str) -> None:
    tab = open_console(browser, server, email)
    page = tab.page
    nav = page.get_by_role("navigation", name="Admin console")
    expect(nav.get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")
    expect(page.locator("svg.bars")).to_have_count(2)
    check_page(page)
    tab.context.close()
    tab.assert_clean()


def test_the_keyboard_skips_the_navigation_and_walks_the_pages(
    browser: Any, server: Server
) -> None:
    """The first Tab offers to skip the navigation; the navigation's links are reached by
    Tab and followed with Enter, and the focus is always visible."""
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the page")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    nav = page.get_by_role("navigation", name="Admin console")
    users = nav.get_by_role("link", name="Users")
    for _ in range(20):
        page.keyboard.press("Tab")
        if users.evaluate("link => link === document.activeElement"):
            break
    expect(users).to_be_focused()
    outline = users.evaluate("link => getComputedStyle(link).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    tab.context.close()
    tab.assert_clean()
