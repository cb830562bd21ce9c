"""The console's clients pages in real Chromium: an administrator registers a confidential
client through the form and sees its secret once, changes its redirect URIs, rotates the
secret with a fresh proof, declares a permission, and deletes the client with a fresh
proof and its typed client id; every page passes axe-core and fits 360 px."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server
from tests.integration.console import ADMIN, AUDITOR, check_page, console_server, open_console
from tests.integration.test_browser_flows import browser

pytestmark = pytest.mark.slow
__all__ = ["browser"]


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return console_server(module_identity_factory)


def test_register_change_rotate_declare_and_delete_a_client(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    page.get_by_role("navigation", name="Admin console").get_by_role("link", name="Clients").click()
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_visible()
    check_page(page)

    # Register: the form explains each field; the answer shows the secret once.
    page.get_by_role("link", name="Register a client").first.click()
    expect(page.get_by_role("heading", name="Register a client", level=1)).to_be_visible()
    check_page(page)
    page.get_by_label("Name").fill("Shop")
    page.get_by_label("Redirect URIs", exact=True).fill("https://shop.example/cb")
    page.get_by_label("Refresh token").check()
    page.get_by_role("button", name="Register the client").click()
    expect(page.get_by_role("heading", name="Shop", level=1)).to_be_visible()
    expect(page.get_by_text("Copy it now: it will not be shown again.")).to_be_visible()
    first_secret = page.get_by_label("Client secret").input_value()
    assert len(first_secret) > 30
    check_page(page)
    page.get_by_role("link", name="I have copied it").click()
    expect(page.get_by_label("Client secret")).to_have_count(0)
    client_id = page.locator("dd code").first.inner_text()

    # Change its redirect URIs.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Shop", level=1)).to_be_visible()
    check_page(page)
    page.get_by_label("Redirect URIs", exact=True).fill(
        "https://shop.example/cb\nhttps://shop.example/new"
    )
    page.get_by_role("button", name="Save the changes").click()
    expect(page.get_by_text("Shop is changed.")).to_be_visible()
    expect(page.get_by_text("https://shop.example/new")).to_be_visible()

    # Rotate the secret: a fresh proof, then the new secret once.
    rotate = page.locator("form", has=page.get_by_role("button", name="Rotate the secret"))
    rotate.get_by_label("Your password or authenticator code").fill(PASSWORD)
    rotate.get_by_role("button", name="Rotate the secret").click()
    expect(page.get_by_role("heading", name="The new secret")).to_be_visible()
    second_secret = page.get_by_label("Client secret").input_value()
    assert second_secret and second_secret != first_secret
    check_page(page)
    page.get_by_role("link", name="I have copied it").click()

    # Declare a permission the application checks.
    page.get_by_label("Name").fill("invoices:read")
    page.get_by_label("Description").fill("Read invoices")
    page.get_by_label("Put it in this client's tokens").check()
    page.get_by_role("button", name="Declare").click()
    expect(page.get_by_text("Shop declares invoices:read.")).to_be_visible()
    expect(page.get_by_role("cell", name="Read invoices")).to_be_visible()
    check_page(page)

    # Delete: a fresh proof and the typed client id.
    delete = page.locator("form", has=page.get_by_role("button", name="Delete the client"))
    delete.get_by_label(f"Type {client_id} to confirm").fill(client_id)
    delete.get_by_label("Your password or authenticator code").fill(PASSWORD)
    delete.get_by_role("button", name="Delete the client").click()
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_visible()
    expect(page.get_by_text("Shop is deleted.")).to_be_visible()
    expect(page.get_by_text("No client is registered yet.")).to_be_visible()
    check_page(page)
    tab.context.close()
    tab.assert_clean()


def test_an_auditor_reads_but_has_no_actions(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, AUDITOR)
    page = tab.page
    page.goto("/admin/clients")
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Register a client")).to_have_count(0)
    check_page(page)
    tab.context.close()
    tab.assert_clean()
