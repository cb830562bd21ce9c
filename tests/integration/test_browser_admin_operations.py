"""The console's operations pages in real Chromium: an administrator ends a user's session,
reads the audit log (filter, a record, the JSON-lines download, verifying the chain),
rotates the signing keys and retires the old one, and reads the settings, where no secret
shows. Every page visited passes axe-core and fits 360 px."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server
from tests.integration.console import ADMIN, PLAIN, check_page, console_server, open_console
from tests.integration.test_browser_flows import Tab, browser, fill_sign_in

pytestmark = pytest.mark.slow
__all__ = ["browser"]

SECRETS = {
    "IDENTITY_SMTP_PASSWORD": "smtp-password-that-must-not-show",
    "IDENTITY_DCR_INITIAL_ACCESS_TOKEN": "registration-token-that-must-not-show-0123",
}


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return console_server(module_identity_factory, **SECRETS)


def test_end_a_session_then_read_and_verify_the_audit_log(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    plain = Tab(browser, server.url)
    plain.page.goto("/sign-in")
    fill_sign_in(plain, PLAIN, PASSWORD)
    expect(plain.page).not_to_have_url(re.compile(r"/sign-in"))

    tab = open_console(browser, server, ADMIN)
    page = tab.page
    nav = page.get_by_role("navigation", name="Admin console")
    nav.get_by_role("link", name="Sessions").click()
    expect(page.get_by_role("heading", name="Sessions", level=1)).to_be_visible()
    page.get_by_label("User's email").fill(PLAIN)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(PLAIN)
    check_page(page)
    rows.first.get_by_role("button", name="End session").click()
    expect(page.get_by_role("status")).to_contain_text("The session was ended")
    expect(page.get_by_text(f"No live sessions for {PLAIN}.")).to_be_visible()
    plain.page.goto("/account")
    expect(plain.page).to_have_url(re.compile(r"/sign-in"))  # that browser is signed out

    nav.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    page.get_by_label("Event").fill("session.revoked")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr").first).to_contain_text(PLAIN)  # the subject
    check_page(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download these records (JSON lines)").click()
    saved = tmp_path / "audit.jsonl"
    download.value.save_as(saved)
    records = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [r["event"] for r in records] == ["session.revoked"]
    assert records[0]["hash"] and records[0]["prev_hash"]

    page.get_by_role("link", name=re.compile(r"^Record \d+: session\.revoked$")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("session.revoked")
    expect(page.get_by_text(records[0]["hash"])).to_be_visible()
    check_page(page)

    page.get_by_role("link", name="← Audit log").click()
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page).to_have_url(re.compile(r"/admin/audit#verify$"))
    expect(page.get_by_role("status")).to_contain_text("The audit chain is intact")
    expect(page.locator("#verify strong.ok")).to_have_text("intact")
    check_page(page)
    for each in (tab, plain):
        each.context.close()
        each.assert_clean()


def test_rotate_and_retire_keys_then_read_the_settings(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    nav = page.get_by_role("navigation", name="Admin console")
    nav.get_by_role("link", name="Signing keys").click()
    expect(page.get_by_role("heading", name="Signing keys", level=1)).to_be_visible()
    active = page.locator("tbody tr", has=page.locator(".badge", has_text="active"))
    old_kid = active.first.locator("code").inner_text()
    check_page(page)

    rotate = page.locator("#rotate")
    rotate.get_by_label("Your password or authenticator code").fill(PASSWORD)
    rotate.get_by_role("button", name="Rotate the signing keys").click()
    expect(page.get_by_role("status")).to_contain_text("New signing key published")
    old_row = page.locator("tbody tr", has=page.get_by_text(old_kid, exact=True))
    expect(old_row.locator(".badge")).to_have_text("retired")

    retire = page.locator("details.retire", has=page.get_by_text(f"Retire {old_kid}"))
    retire.locator("summary").click()
    retire.get_by_label(f"Type {old_kid} to confirm").fill(old_kid)
    retire.get_by_label("Your password or authenticator code").fill(PASSWORD)
    retire.get_by_role("button", name=f"Retire {old_kid}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Key {old_kid} retired")
    check_page(page)

    nav.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    expect(page.get_by_text("IDENTITY_SMTP_PASSWORD", exact=True)).to_be_visible()
    content = page.content()
    secret_key = (server.instance.path / "secret_key").read_text().strip()
    for value in (*SECRETS.values(), secret_key, PASSWORD):
        assert value not in content
    check_page(page)
    tab.context.close()
    tab.assert_clean()
