"""A person's data in real Chromium: asking for a copy on the privacy page, downloading the
ZIP from the mailed single-use link (built by the server's background jobs), deleting the
account and keeping it after all through the mailed link. Every page must log no console
error (CSP violations included)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server, link_in, outbox_mail
from tests.integration.test_browser_flows import Tab, browser, fill_sign_in

pytestmark = pytest.mark.slow
__all__ = ["browser"]

EMAIL = "dana@example.org"


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    instance = module_identity_factory.instance(IDENTITY_RATELIMIT_SIGN_IN="200/minute")
    instance.cli("init")
    instance.create_user(EMAIL, PASSWORD)
    return module_identity_factory.server(instance)


@pytest.fixture
def new_tab(browser: Any, server: Server) -> Iterator[Callable[[], Tab]]:
    tabs: list[Tab] = []

    def open_tab() -> Tab:
        tab = Tab(browser, server.url, accept_downloads=True)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.context.close()
    for tab in tabs:
        tab.assert_clean()


def to_privacy_page(tab: Tab, server: Server) -> None:
    page = tab.page
    page.goto("/sign-in")
    fill_sign_in(tab, EMAIL)
    expect(page).to_have_url(server.url + "/account")
    page.get_by_role("link", name="Your data").click()
    expect(page.get_by_role("heading", name="Your data")).to_be_visible()


def test_GDPR_01_a_person_downloads_their_data_in_a_browser(
    new_tab: Callable[[], Tab], server: Server
) -> None:
    tab = new_tab()
    page = tab.page
    to_privacy_page(tab, server)
    page.locator("#export-password").fill(PASSWORD)
    page.get_by_role("button", name="Download my data").click()
    expect(page.locator("main")).to_contain_text("We will mail you a download link shortly")
    mail = outbox_mail(server.instance, EMAIL, "Your data export is ready")
    link = link_in(mail)
    page.goto(link)
    with page.expect_download() as started:
        page.get_by_role("button", name="Download the ZIP file").click()
    download = started.value
    assert re.fullmatch(r"identity-export-\d{8}\.zip", download.suggested_filename)
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as archive:
        data = json.loads(archive.read("data.json"))
        assert "manifest.jws" in archive.namelist()
    assert data["data"]["users"][0]["email"] == EMAIL
    page.goto(link)  # the link is spent
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    tab.take_errors()  # that page answers 404, as it should


def test_GDPR_06_a_person_deletes_their_account_then_keeps_it(
    new_tab: Callable[[], Tab], server: Server
) -> None:
    tab = new_tab()
    page = tab.page
    to_privacy_page(tab, server)
    page.locator("#delete-password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    expect(page.locator("main")).to_contain_text("Your account is disabled and will be erased")
    mail = outbox_mail(server.instance, EMAIL, "Your account will be deleted")
    page.goto(link_in(mail))
    page.get_by_role("button", name="Keep my account").click()
    expect(page.locator("main")).to_contain_text("Your account stays")
    fill_sign_in(tab, EMAIL)
    expect(page).to_have_url(server.url + "/account")
