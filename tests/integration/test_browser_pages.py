"""What a person sees on identity's own pages, in real Chromium against a real server: the
account page on a phone, sign-in after a refused password, used links, the resend page,
the app a sign-in continues to, and changing name and email address.

The server, its clients and the browser are those of ``test_browser_flows.py`` (the same
fixtures, one server for this module); every test fails on any console error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.integration import test_browser_flows as flows
from tests.integration.conftest import link_in, outbox_mail
from tests.integration.test_browser_flows import (
    EMAIL,
    Site,
    Tab,
    answer_consent,
    arrive,
    assert_code,
    authorize_url,
    fill_sign_in,
    forget_consent,
    new_request,
)

pytestmark = pytest.mark.slow

# The fixtures of test_browser_flows.py (module-scoped: this module gets a server of its own).
browser = flows.browser
rp = flows.rp
site = flows.site
new_tab = flows.new_tab

PHONE = {"width": 360, "height": 740}


def fits(page: Any) -> None:
    """The page does not scroll sideways at its viewport width. Measured once the page has
    loaded: a URL assertion passes as soon as the document arrives, and on a busy machine
    (CI) its stylesheet, which does the wrapping, could still be on its way."""
    page.wait_for_load_state("load")
    scroll, client = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"{page.url} scrolls sideways: {scroll} px in {client} px"


# The characters of an element's text with the vertical position of the line each one is
# drawn on: where the position changes, the browser broke the line.
LINES_OF_TEXT = """(element) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const lines = [];
  let top = null;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const y = Math.round(range.getBoundingClientRect().top);
      if (top === null || y > top + 2) { lines.push(""); top = y; }
      lines[lines.length - 1] += node.data[i];
    }
  }
  return lines;
}"""


def drawn_lines(locator: Any) -> list[str]:
    lines: list[str] = locator.evaluate(LINES_OF_TEXT)
    return lines


def create_user(site: Site, email: str, *args: str) -> None:
    site.server.instance.cli(
        "users", "create", email, "--password-stdin", "--verified", *args, input=PASSWORD + "\n"
    )


def test_long_addresses_wrap_only_before_at_and_dots_on_a_phone(
    new_tab: Callable[..., Tab], site: Site
) -> None:
    """At 360 px a long address on the account page wraps only before "@" or a dot, never
    inside a word, and no address, however long, makes the page scroll sideways."""
    long_address = (
        "maximilian.alexander.featherstonehaugh@correspondence.research-department"
        ".example-university.org"
    )
    undotted = "x" * 60 + "@example.org"  # one part wider than the screen
    for address in (long_address, undotted):
        create_user(site, address)
        tab = new_tab(viewport=PHONE)
        page = tab.page
        page.goto("/sign-in")
        fill_sign_in(tab, address, PASSWORD)
        expect(page).to_have_url(site.url + "/account")
        fits(page)
        shown = page.locator("dl.facts dd.email")
        expect(shown).to_have_text(address)
        lines = drawn_lines(shown)
        assert "".join(lines) == address
        for line in lines[1:]:
            assert line.startswith(("@", ".")), f"{address} broken inside a word: {lines}"
        if address == long_address:
            assert len(lines) > 1, lines  # it did wrap, at the allowed points
            width, visible = shown.evaluate("(e) => [e.scrollWidth, e.clientWidth]")
            assert width <= visible, "a realistic address must not need scrolling"
        # The bar at the top shows the address on one line (cut short if need be).
        assert len(drawn_lines(page.locator("header a.who"))) == 1
        for path in ("/account/email", "/account/name", "/account/apps"):
            page.goto(path)
            fits(page)
        tab.assert_clean()


def test_account_page_shows_an_admins_roles(new_tab: Callable[..., Tab], site: Site) -> None:
    """An admin sees the admin role on the account page; a user without roles sees none."""
    create_user(site, "root@example.org", "--role", "admin")
    tab = new_tab()
    page = tab.page
    page.goto("/sign-in")
    fill_sign_in(tab, "root@example.org", PASSWORD)
    facts = page.locator("dl.facts")
    expect(facts.locator("dt", has_text="Roles")).to_be_visible()
    expect(facts.locator("dt:has-text('Roles') + dd")).to_have_text("admin")

    other = new_tab()
    other.page.goto("/sign-in")
    fill_sign_in(other, EMAIL, PASSWORD)
    expect(other.page.locator("dl.facts")).to_contain_text(EMAIL)
    expect(other.page.locator("dl.facts dt", has_text="Roles")).to_have_count(0)
    tab.assert_clean()


def test_refused_password_keeps_the_email_and_focuses_the_password(
    new_tab: Callable[..., Tab], site: Site
) -> None:
    """After a refused password the error shows, the email stays, and the cursor is in the
    emptied password field, ready for a second try."""
    tab = new_tab()
    page = tab.page
    page.goto("/sign-in")
    expect(page.get_by_label("Email")).to_be_focused()
    fill_sign_in(tab, EMAIL, "not the password at all")
    expect(page.get_by_role("alert")).to_contain_text("The email or password is not correct")
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_value("")
    expect(password).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url + "/account")
    tab.assert_clean()


def test_used_verification_link_says_verified_and_offers_sign_in(
    new_tab: Callable[..., Tab], site: Site
) -> None:
    """Opening a verification link again shows that the address is verified and a way to
    sign in, and no Verify button."""
    email = "ivy@example.org"
    tab = new_tab()
    page = tab.page
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill("ivy's long passphrase")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(site.url + "/register/sent")
    link = link_in(outbox_mail(site.server.instance, email, "Verify your email address"))
    page.goto(link)
    page.get_by_role("button", name="Verify my email address").click()
    expect(page).to_have_url(site.url + "/sign-in")

    page.goto(link)
    main = page.locator("main")
    expect(main).to_contain_text("This link has been used: the email address is verified.")
    expect(main.get_by_role("button")).to_have_count(0)
    main.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(site.url + "/sign-in")
    fill_sign_in(tab, email, "ivy's long passphrase")
    expect(page).to_have_url(site.url + "/account")
    tab.assert_clean()


def test_resend_page_explains_itself_and_leads_back(
    new_tab: Callable[..., Tab], site: Site
) -> None:
    """The resend-verification page says what it is for and links back to sign-in."""
    tab = new_tab()
    page = tab.page
    page.goto("/sign-in")
    page.get_by_role("link", name="Resend the verification email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Resend the verification email")
    expect(page.locator("main")).to_contain_text(
        "A new account must confirm its email address before it can sign in."
    )
    page.get_by_role("link", name="Back to sign in").click()
    expect(page).to_have_url(site.url + "/sign-in")
    tab.assert_clean()


def test_sign_in_names_the_app_and_connected_apps_lists_scopes_like_consent(
    new_tab: Callable[..., Tab], site: Site
) -> None:
    """Signing in for an app says "to continue to" it; the connected-apps page then lists
    what the app may do in the consent page's order and words."""
    forget_consent(site, site.web)
    tab = new_tab()
    page = tab.page
    auth = new_request(site, site.web, scope="email profile openid")
    page.goto(authorize_url(auth))
    expect(page.locator("main .subtitle")).to_have_text(f"to continue to {site.web.name}")
    fill_sign_in(tab)
    consent_items = page.locator("main ul.scopes li").all_inner_texts()
    assert consent_items == [
        "Sign you in with your identity account",
        "See your name",
        "See your email address",
    ]
    answer_consent(tab, site.web, "Allow")
    assert_code(arrive(tab, site, auth.state), site, auth)

    page.goto(site.url + "/account/apps")
    app = page.locator("section.app").filter(has_text=site.web.name)
    assert app.locator("ul.scopes li").all_inner_texts() == consent_items
    page.goto("/sign-in?force=1")
    expect(page.locator("main .subtitle")).to_have_count(0)
    tab.assert_clean()


def test_change_name_and_email_on_a_phone(new_tab: Callable[..., Tab], site: Site) -> None:
    """From the account page at 360 px: add a name; ask for a new address (old one gets a
    notice, new one a link); the old address works until the link is opened, then only
    the new one does."""
    old, new = "henry@example.org", "henry.new@example.org"
    create_user(site, old)
    tab = new_tab(viewport=PHONE)
    page = tab.page
    page.goto("/sign-in")
    fill_sign_in(tab, old, PASSWORD)
    expect(page).to_have_url(site.url + "/account")

    page.locator("main").get_by_role("link", name="Add your name").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change name")
    fits(page)
    page.get_by_label("Name").fill("Henry")
    page.get_by_role("button", name="Save name").click()
    expect(page).to_have_url(site.url + "/account")
    expect(page.get_by_role("status")).to_contain_text("Your name has been changed.")
    expect(page.locator("dl.facts")).to_contain_text("Henry")

    page.locator("main").get_by_role("link", name="Change email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change email")
    fits(page)
    expect(page.get_by_label("New email")).to_be_focused()
    page.get_by_label("New email").fill(new)
    page.get_by_label("Current password").fill("a wrong password here")
    page.get_by_role("button", name="Send confirmation link").click()
    expect(page.get_by_role("alert")).to_contain_text("The current password is not correct.")
    expect(page.get_by_label("New email")).to_have_value(new)
    expect(page.get_by_label("Current password")).to_be_focused()
    tab.take_errors()  # the refused password answered 400 on purpose
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Send confirmation link").click()
    expect(page).to_have_url(site.url + "/account")
    expect(page.get_by_role("status")).to_contain_text(f"If {new} can be used")
    expect(page.locator("dl.facts")).to_contain_text(old)
    instance = site.server.instance
    notice = outbox_mail(instance, old, "Your email address is being changed")
    assert new in notice.get_content()
    link = link_in(outbox_mail(instance, new, "Confirm your new email address"))

    # Until the link is opened the old address is the one that signs in.
    other = new_tab()
    other.page.goto("/sign-in")
    fill_sign_in(other, old, PASSWORD)
    expect(other.page).to_have_url(site.url + "/account")

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your new email")
    fits(page)
    page.get_by_role("button", name="Change my email address").click()
    expect(page).to_have_url(site.url + "/account")
    expect(page.get_by_role("status")).to_contain_text(f"Your email address is now {new}.")
    expect(page.locator("dl.facts dd.email")).to_have_text(new)
    fits(page)

    page.locator("header").get_by_role("link", name="Sign out").click()
    page.get_by_role("button", name="Sign out").click()
    fill_sign_in(tab, old, PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("not correct")
    fill_sign_in(tab, new, PASSWORD)
    expect(page).to_have_url(site.url + "/account")
    tab.assert_clean()


def test_used_email_change_link_shows_no_button(new_tab: Callable[..., Tab], site: Site) -> None:
    """Opening an email-change link again says the address is already changed."""
    old, new = "jane@example.org", "jane@example.net"
    create_user(site, old)
    tab = new_tab()
    page = tab.page
    page.goto("/sign-in")
    fill_sign_in(tab, old, PASSWORD)
    page.goto("/account/email")
    page.get_by_label("New email").fill(new)
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Send confirmation link").click()
    expect(page).to_have_url(site.url + "/account")
    link = link_in(outbox_mail(site.server.instance, new, "Confirm your new email address"))
    page.goto(link)
    page.get_by_role("button", name="Change my email address").click()
    expect(page).to_have_url(site.url + "/account")
    page.goto(link)
    main = page.locator("main")
    expect(main).to_contain_text(f"This link has been used: your email address is {new}.")
    expect(main.get_by_role("button")).to_have_count(0)
    main.get_by_role("link", name="Go to your account").click()
    expect(page).to_have_url(site.url + "/account")
    assert re.search(r"/account$", page.url)
    tab.assert_clean()
