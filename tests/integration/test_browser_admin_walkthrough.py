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

from tests.integration.conftest import Harness, Server, outbox_mail
from tests.integration.console import check_page
from tests.integration.test_browser_flows import Tab, browser, fill_sign_in

pytestmark = pytest.mark.slow
__all__ = ["browser"]

INVITEE = "newcomer@example.org"


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
    nav = page.get_by_role("navigation", name="Admin console")

    # Create a client: its secret is shown once.
    nav.get_by_role("link", name="Clients").click()
    page.get_by_role("link", name="Register a client").first.click()
    page.get_by_label("Name").fill("Wiki")
    page.get_by_label("Redirect URIs", exact=True).fill("https://wiki.example.org/callback")
    page.get_by_role("button", name="Register the client").click()
    expect(page.get_by_role("heading", name="Wiki", level=1)).to_be_visible()
    expect(page.get_by_text("Copy it now: it will not be shown again.")).to_be_visible()
    assert page.get_by_label("Client secret").input_value()
    check_page(page)
    page.get_by_role("link", name="I have copied it").click()

    # Invite a user: the invitation is mailed.
    nav.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="Invite").click()
    page.get_by_role("textbox", name="Email").fill(INVITEE)
    page.get_by_role("button", name="Create invitation").click()
    expect(page.get_by_role("status").first).to_contain_text(f"We mailed this link to {INVITEE}")
    link = page.get_by_test_id("invitation-link").inner_text()
    assert (
        link
        in outbox_mail(
            server.instance, INVITEE, "You are invited to create an account"
        ).get_content()
    )
    check_page(page)

    # A role that inherits another, given to the operator, explained by the explorer.
    nav.get_by_role("link", name="Roles").click()
    new_role(page, "wiki-reader", "wiki:read")
    page.get_by_role("link", name="← Roles").click()
    new_role(page, "wiki-editor", "wiki:write", parent="wiki-reader")
    page.get_by_label("Give it to", exact=True).select_option("user")
    page.get_by_label("Email, group or client id").fill(email)
    page.get_by_role("button", name="Give role").click()
    expect(page.get_by_text(f"Role wiki-editor given to {email}.")).to_be_visible()
    nav.get_by_role("link", name="Roles").click()
    drawing = page.get_by_role("figure", name="Role inheritance")
    expect(drawing).to_contain_text("inherits wiki-reader")
    check_page(page)
    nav.get_by_role("link", name="Decisions").click()
    page.get_by_label("Subject: a user's email or a client id").fill(email)
    page.get_by_label("do permission").fill("wiki:read")
    page.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("Allowed", exact=True)).to_be_visible()
    path = page.get_by_role("list", name="The path that grants wiki:read")
    expect(path.get_by_role("listitem")).to_contain_text(["role wiki-editor", "role wiki-reader"])
    check_page(page)

    # The audit log holds what was done, with this operator as the actor.
    nav.get_by_role("link", name="Audit log").click()
    page.get_by_label("Event").fill("client.create")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr").first).to_contain_text(email)
    check_page(page)

    # Rotate the signing keys, with a fresh proof.
    nav.get_by_role("link", name="Signing keys").click()
    rotate = page.locator("#rotate")
    rotate.get_by_label("Your password or authenticator code").fill(password)
    rotate.get_by_role("button", name="Rotate the signing keys").click()
    expect(page.get_by_role("status")).to_contain_text("New signing key published")
    check_page(page)

    tab.context.close()
    tab.assert_clean()


def new_role(page: Any, name: str, permission: str, parent: str | None = None) -> None:
    page.get_by_role("link", name="New role").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Other permissions, one per line").fill(permission)
    if parent:
        page.get_by_role("group", name="Inherits the permissions of").get_by_label(parent).check()
    page.get_by_role("button", name="Create role").click()
    expect(page.get_by_role("heading", name=f"Role {name}", level=1)).to_be_visible()
