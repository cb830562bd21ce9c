"""The console's roles, groups and decision explorer in real Chromium: an administrator
defines a role and one inheriting it, sees the inheritance drawn, gives the heir to a user,
asks the explorer why the user may read invoices (through the inherited role) and what if
the role were taken away, then makes a group and adds the user; every page passes axe-core
and fits 360 px."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import Harness, Server
from tests.integration.console import (
    ADMIN,
    AUDITOR,
    PLAIN,
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


def new_role(page: Any, name: str, permission: str, parent: str | None = None) -> None:
    page.get_by_role("link", name="New role").click()
    expect(page.get_by_role("heading", name="New role", level=1)).to_be_visible()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Other permissions, one per line").fill(permission)
    if parent:
        page.get_by_role("group", name="Inherits the permissions of").get_by_label(parent).check()
    page.get_by_role("button", name="Create role").click()
    expect(page.get_by_role("heading", name=f"Role {name}", level=1)).to_be_visible()
    expect(page.get_by_text(f"Role {name} created.")).to_be_visible()


def test_roles_inheritance_explained_and_a_group(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, ADMIN)
    page = tab.page
    nav = page.get_by_role("navigation", name="Admin console")
    nav.get_by_role("link", name="Roles").click()
    expect(page.get_by_role("heading", name="Roles", level=1)).to_be_visible()

    # Define a role, then one inheriting it: the new role form passes the checks too.
    new_role(page, "billing-viewer", "invoices:read")
    page.get_by_role("link", name="← Roles").click()
    page.get_by_role("link", name="New role").click()
    check_page(page)
    page.go_back()
    new_role(page, "billing-approver", "invoices:approve", parent="billing-viewer")
    expect(page.get_by_role("cell", name="through role billing-viewer")).to_be_visible()

    # The inheritance, drawn: the heir sits in the branch of the role it inherits.
    page.get_by_role("link", name="← Roles").click()
    drawing = page.get_by_role("figure", name="Role inheritance")
    viewer = drawing.get_by_role("listitem").filter(
        has=page.get_by_role("link", name="billing-viewer", exact=True)
    )
    heir = viewer.get_by_role("listitem").filter(has_text="billing-approver")
    expect(heir).to_contain_text("inherits billing-viewer")
    check_page(page)

    # Give the heir to a user.
    page.get_by_role("link", name="billing-approver", exact=True).first.click()
    page.get_by_label("Give it to", exact=True).select_option("user")
    page.get_by_label("Email, group or client id").fill(PLAIN)
    page.get_by_role("button", name="Give role").click()
    expect(page.get_by_text(f"Role billing-approver given to {PLAIN}.")).to_be_visible()
    expect(page.get_by_role("cell", name=PLAIN, exact=True)).to_be_visible()
    check_page(page)

    # Why may the user read invoices? Through the role the heir inherits.
    nav.get_by_role("link", name="Decisions").click()
    expect(page.get_by_role("heading", name="Decision explorer", level=1)).to_be_visible()
    page.get_by_label("Subject: a user's email or a client id").fill(PLAIN)
    page.get_by_label("do permission").fill("invoices:read")
    page.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("Allowed", exact=True)).to_be_visible()
    path = page.get_by_role("list", name="The path that grants invoices:read")
    expect(path.get_by_role("listitem")).to_have_text(
        [
            f"user {PLAIN}",
            "role billing-approver",
            "role billing-viewer",
            "permission invoices:read",
        ]
    )
    check_page(page)

    # What if the role were taken away: the answer flips, nothing changes.
    page.get_by_label("the subject no longer had the role").select_option("billing-approver")
    page.get_by_role("button", name="Ask").click()
    expect(page.get_by_text("The decision changes")).to_be_visible()
    expect(page.get_by_text("Denied", exact=True)).to_be_visible()
    assert "remove=billing-approver" in page.url  # a link to share
    check_page(page)

    # A group, and a member.
    nav.get_by_role("link", name="Groups").click()
    expect(page.get_by_text("No group yet.")).to_be_visible()
    check_page(page)
    page.get_by_role("link", name="New group").first.click()
    page.get_by_label("Name", exact=True).fill("finance")
    page.get_by_label("Description").fill("Pays the bills")
    check_page(page)
    page.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("heading", name="Group finance", level=1)).to_be_visible()
    page.get_by_label("Add a member by email").fill(PLAIN)
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_text(f"{PLAIN} added to finance.")).to_be_visible()
    expect(page.get_by_role("cell", name=PLAIN, exact=True)).to_be_visible()
    check_page(page)

    page.goto("/admin/permissions")
    expect(page.get_by_role("cell", name="authz:check")).to_be_visible()
    check_page(page)
    tab.context.close()
    tab.assert_clean()


def test_an_auditor_reads_roles_and_groups_without_actions(browser: Any, server: Server) -> None:
    tab = open_console(browser, server, AUDITOR)
    page = tab.page
    page.goto("/admin/roles/admin")
    expect(page.get_by_role("heading", name="Role admin", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Give role")).to_have_count(0)
    expect(page.get_by_role("heading", name="Change")).to_have_count(0)
    check_page(page)
    tab.context.close()
    tab.assert_clean()
