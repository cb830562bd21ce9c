"""What the admin console's Chromium tests share: a server with operators of each built-in
role, signing in to the console, and the checks every console page must pass (axe-core
finds no serious or critical violation; no horizontal page scroll at 360 px).

A test module uses it like this::

    from tests.integration.console import console_server, open_console, check_page
    from tests.integration.test_browser_flows import browser  # the module's Chromium

    @pytest.fixture(scope="module")
    def server(module_identity_factory):
        return console_server(module_identity_factory)

    def test_...(browser, server):
        tab = open_console(browser, server, ADMIN)
        ...
        check_page(tab.page)
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration.conftest import Harness, Server
from tests.integration.test_browser_flows import Tab, fill_sign_in

# One operator per built-in role (identity.rbac.permissions.BUILTIN_ROLES), and a user.
ADMIN = "admin@example.org"
USER_MANAGER = "manager@example.org"
AUDITOR = "auditor@example.org"
PLAIN = "plain@example.org"
OPERATORS = {ADMIN: "admin", USER_MANAGER: "user-manager", AUDITOR: "auditor"}

# The per-page tests sign in with a password only; test_browser_admin_walkthrough.py goes
# through the second factor the console asks by default.
CONSOLE_ENV = {"IDENTITY_ADMIN_MFA_REQUIRED": "false", "IDENTITY_RATELIMIT_SIGN_IN": "500/minute"}

_axe = Axe()
IMPACTS = ("serious", "critical")


def console_server(harness: Harness, **env: str) -> Server:
    instance = harness.instance(**{**CONSOLE_ENV, **env})
    instance.cli("init")
    for email, role in OPERATORS.items():
        instance.cli(
            "users",
            "create",
            email,
            "--password-stdin",
            "--verified",
            "--role",
            role,
            "--name",
            role.replace("-", " ").title(),
            input=PASSWORD + "\n",
        )
    instance.create_user(PLAIN, PASSWORD)
    return harness.server(instance)


def open_console(browser: Any, server: Server, email: str = ADMIN, **options: Any) -> Tab:
    """A new browser context signed in as ``email``, on the dashboard."""
    tab = Tab(browser, server.url, **options)
    tab.page.goto("/admin/")
    fill_sign_in(tab, email, PASSWORD)
    expect(tab.page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    return tab


def check_page(page: Any) -> None:
    """axe-core in the page (WCAG 2.x A/AA rules): no serious or critical violation; and at
    360 px wide nothing scrolls the page sideways (wide tables scroll in their own box)."""
    results = _axe.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in IMPACTS]
    assert not bad, (
        "\n".join(
            f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in bad
        )
        + f"\n(on {page.url})"
    )
    size = page.viewport_size
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px at 360 px"
    finally:
        if size:
            page.set_viewport_size(size)
