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
