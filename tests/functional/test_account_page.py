"""The account page: what it shows (roles, the address), changing the name, and changing
the email address through a link mailed to the new address."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import time_machine

from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    add_user,
    audit_events,
    comparable,
    get_user,
    set_cookie_names,
)

INVALID = "This link is invalid or has expired. Please request a new one."
OLD = "alice@example.org"
NEW = "alice.new@example.net"


def text(html):
    """A page's text without its tags (addresses are marked up where they may wrap)."""
    if isinstance(html, bytes):
        html = html.decode()
    return re.sub(r"<[^>]+>", "", html)


def request_change(client, new=NEW, password=PASSWORD):
    return form_post(client, "/account/email", {"new_email": new, "current_password": password})


def confirm(client, link):
    return form_post(client, link, {})


def post_signed_in(client, path):
    """POST with a CSRF token taken from another page of this signed-in browser."""
    token = csrf_token(client.get("/account/name").data)
    return client.post(path, data={"csrf_token": token})


# What the page shows ---------------------------------------------------------------------


def test_account_page_shows_roles_when_there_are_some(app, client):
    """A user with roles sees them on the account page; a user without sees no Roles row."""
    add_user(app, "admin@example.org", roles=("admin", "auditor"))
    add_user(app, "plain@example.org")
    sign_in(client, "admin@example.org")
    html = client.get("/account").data.decode()
    assert "<dt>Roles</dt><dd>admin, auditor</dd>" in html
    other = app.test_client()
    sign_in(other, "plain@example.org")
    assert "<dt>Roles</dt>" not in other.get("/account").data.decode()


def test_account_page_address_may_break_only_before_at_and_dots(app, client):
    """The address is marked up as unbreakable parts with <wbr> before "@" and each dot,
    so the browser never breaks it inside a part (not even after a hyphen)."""
    add_user(app, "first.last@my-mail.example.org")
    sign_in(client, "first.last@my-mail.example.org")
    html = client.get("/account").data.decode()
    parts = ["first", ".last", "@my-mail", ".example", ".org"]
    marked = "<wbr>".join(f"<span>{part}</span>" for part in parts)
    assert f'<dd class="email">{marked}</dd>' in html, html


def test_email_breaks_filter_escapes_the_address():
    """The filter escapes markup in the address before adding its <wbr> marks."""
    from identity.accounts.views import email_breaks

    assert str(email_breaks('"<b>"@x.org')) == (
        "<span>&#34;&lt;b&gt;&#34;</span><wbr><span>@x</span><wbr><span>.org</span>"
    )


def test_account_page_links_to_the_name_and_email_forms(signed_in):
    """The account page links to the name form and the email form."""
    html = signed_in.get("/account").data.decode()
    assert 'href="/account/name"' in html and 'href="/account/email"' in html


# Name ------------------------------------------------------------------------------------


def test_change_name_sets_audits_and_updates_the_claim_time(app, signed_in):
    """Saving a name stores it (cleaned), moves updated_at and writes user.name_changed."""
    before = get_user(app, OLD).updated_at
    page = signed_in.get("/account/name")
    assert page.status_code == 200 and 'autocomplete="name"' in page.data.decode()
    response = form_post(signed_in, "/account/name", {"name": "  Alice\u200b Liddell "})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    user = get_user(app, OLD)
    assert user.name == "Alice Liddell"
    assert user.updated_at > before
    html = signed_in.get("/account").data.decode()
    assert "Your name has been changed." in html and "<dd>Alice Liddell</dd>" in html
    events = audit_events(app, "user.name_changed")
    assert len(events) == 1 and events[0]["actor_id"] == events[0]["subject_id"] == user.id


def test_change_name_prefills_and_empty_removes(app, client):
    """The form shows the current name; saving it empty removes the name."""
    add_user(app, OLD, name="Alice")
    sign_in(client)
    assert 'value="Alice"' in client.get("/account/name").data.decode()
    assert form_post(client, "/account/name", {"name": ""}).status_code == 303
    assert get_user(app, OLD).name is None
    assert "Your name has been removed." in client.get("/account").data.decode()


def test_unchanged_name_is_not_audited(app, client):
    """Saving the same name again changes nothing and records nothing."""
    add_user(app, OLD, name="Alice")
    sign_in(client)
    assert form_post(client, "/account/name", {"name": "Alice"}).status_code == 303
    assert audit_events(app, "user.name_changed") == []


def test_change_name_needs_sign_in_and_refuses_long_names(app, client, user):
    """Signed out, the form sends to sign-in; a 201-character name answers 400."""
    response = client.get("/account/name")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/account/name"
    sign_in(client)
    assert form_post(client, "/account/name", {"name": "x" * 201}).status_code == 400
    assert get_user(app, OLD).name is None


# Email -----------------------------------------------------------------------------------


def test_email_change_mails_the_new_address_and_notifies_the_old(app, signed_in, mailbox):
    """Asking for a change mails a link to the new address and a notice to the old one;
    the address does not change yet and the old one still signs in."""
    response = request_change(signed_in)
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    shown = text(signed_in.get("/account").data)
    assert f"If {NEW} can be used, a link to confirm it is on its way there." in shown
    assert f"until then, sign in with {OLD}." in shown
    assert get_user(app, OLD) is not None and get_user(app, NEW) is None
    [link_mail] = mailbox.to(NEW)
    assert link_mail["Subject"] == "Confirm your new email address"
    assert "/account/email/confirm/" in mailbox.last_link(NEW)
    [notice] = mailbox.to(OLD)
    assert notice["Subject"] == "Your email address is being changed"
    assert NEW in notice.get_content() and "/forgot-password" in notice.get_content()
    assert sign_in(app.test_client(), OLD).status_code == 303
    assert sign_in(app.test_client(), NEW).status_code == 200
    [event] = audit_events(app, "user.email_change_requested")
    assert event["outcome"] == "success" and event["personal"]["new_email"] == NEW


def test_email_change_link_changes_the_address_once_confirmed(app, signed_in, mailbox):
    """Opening the link shows a button; pressing it changes and verifies the address,
    after which only the new address signs in; the change is audited."""
    user_id = get_user(app, OLD).id
    request_change(signed_in)
    link = mailbox.last_link(NEW)
    page = signed_in.get(link)
    assert page.status_code == 200 and "Change my email address" in page.data.decode()
    assert get_user(app, OLD) is not None  # a GET (or a mail scanner) changes nothing
    response = confirm(signed_in, link)
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    user = get_user(app, NEW)
    assert user.id == user_id and user.is_verified
    assert get_user(app, OLD) is None
    assert f"Your email address is now {NEW}." in text(signed_in.get("/account").data)
    assert sign_in(app.test_client(), NEW).status_code == 303
    assert sign_in(app.test_client(), OLD).status_code == 200
    [event] = audit_events(app, "user.email_changed")
    assert event["personal"] == {"old_email": OLD, "new_email": NEW} and event["data"] == {}
    assert event["actor_id"] == event["subject_id"] == user_id


def test_email_change_link_works_once(app, signed_in, mailbox):
    """A used change link says so and offers the account, with no button."""
    request_change(signed_in)
    link = mailbox.last_link(NEW)
    confirm(signed_in, link)
    response = signed_in.get(link)
    assert response.status_code == 200
    html = response.data.decode()
    assert f"This link has been used: your email address is {NEW}." in text(html)
    assert "<button" not in html and 'href="/account">Go to your account' in html
    assert len(audit_events(app, "user.email_changed")) == 1


def test_email_change_normalises_the_new_address(app, signed_in, mailbox):
    """The new address is stored in the canonical form registration uses."""
    request_change(signed_in, new="Alice.New@EXAMPLE.net")
    confirm(signed_in, mailbox.last_link(NEW))
    assert get_user(app, NEW) is not None


def test_email_change_to_a_taken_address_answers_the_same(app, mailbox):
    """For an address another account has, the answer, the cookies and the number of
    mails are those of a free address; that account's owner is told, nothing changes."""
    add_user(app, OLD)
    add_user(app, "bob@example.org")
    seen = []
    for new in ("carol@example.org", "BOB@example.org"):
        client = app.test_client()
        sign_in(client)
        response = request_change(client, new=new)
        seen.append(
            (
                response.status_code,
                response.headers["Location"],
                set_cookie_names(response),
                comparable(text(client.get("/account").data), new.lower()),
            )
        )
    assert seen[0] == seen[1]
    assert [m["Subject"] for m in mailbox.to("bob@example.org")] == [
        "Someone tried to use your email address"
    ]
    assert "/confirm/" not in mailbox.to("bob@example.org")[0].get_content()
    # A notice each time (the second browser's sign-in also brought a new-device mail).
    notices = [m for m in mailbox.to(OLD) if m["Subject"] != "New sign-in to your account"]
    assert len(notices) == 2
    assert get_user(app, OLD) is not None
    taken = audit_events(app, "user.email_change_requested")[-1]
    assert taken["outcome"] == "failure" and taken["data"]["reason"] == "email_taken"


def test_email_change_needs_the_current_password(app, signed_in, mailbox):
    """A wrong current password answers 400, mails nothing and is audited."""
    response = request_change(signed_in, password="not the password")
    assert response.status_code == 400
    assert "The current password is not correct." in response.data.decode()
    assert mailbox.messages == []
    [event] = audit_events(app, "user.email_change_requested")
    assert event["outcome"] == "failure" and event["data"]["reason"] == "wrong_password"


def test_email_change_refuses_bad_and_same_addresses(signed_in, mailbox):
    """A malformed address and the current address answer 400 and mail nothing."""
    bad = request_change(signed_in, new="not an address")
    assert bad.status_code == 400 and "Enter a valid email address." in bad.data.decode()
    same = request_change(signed_in, new="ALICE@example.org")
    assert same.status_code == 400 and "That is already your email address." in same.data.decode()
    assert mailbox.messages == []


def test_email_change_form_focuses_the_password_once_the_address_is_known(signed_in):
    """The form opens on the new address; after a wrong password the address is kept and
    the cursor waits in the (empty) password field."""
    page = signed_in.get("/account/email").data.decode()
    assert re.search(r'<input[^>]*autofocus[^>]*name="new_email"', page)
    html = request_change(signed_in, password="wrong").data.decode()
    assert f'value="{NEW}"' in html
    assert re.search(r'<input[^>]*autofocus[^>]*name="current_password"', html)
    assert not re.search(r'<input[^>]*autofocus[^>]*name="new_email"', html)


def test_email_change_link_needs_the_accounts_own_browser(app, client, mailbox):
    """Signed out, the link sends to sign-in and back; another account's browser gets the
    invalid-link page, and its address is not changed."""
    add_user(app, OLD)
    add_user(app, "mallory@example.org")
    sign_in(client)
    request_change(client)
    link = mailbox.last_link(NEW)
    stranger = app.test_client()
    response = stranger.get(link)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/account/email/confirm/")
    sign_in(stranger, "mallory@example.org")
    assert stranger.get(link).status_code == 400
    assert post_signed_in(stranger, link).status_code == 400
    assert get_user(app, "mallory@example.org") is not None and get_user(app, NEW) is None


def test_a_newer_request_or_a_password_change_kills_the_link(app, client, mailbox):
    """Asking again (for another address) or changing the password ends older links."""
    add_user(app, OLD)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        sign_in(client)
        request_change(client)
        first = mailbox.last_link(NEW)
        traveller.shift(timedelta(seconds=5))
        request_change(client, new="alice.other@example.net")
        second = mailbox.last_link("alice.other@example.net")
        assert client.get(first).status_code == 400
        assert client.get(second).status_code == 200
        form_post(
            client,
            "/account/password",
            {"current_password": PASSWORD, "new_password": "another long passphrase"},
        )
        response = client.get(second)
    assert response.status_code == 400 and INVALID in response.data.decode()
    assert get_user(app, OLD) is not None


def test_email_change_link_expires(app, client, mailbox):
    """A change link older than verification_link_lifetime is refused."""
    add_user(app, OLD)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        sign_in(client)
        request_change(client)
        link = mailbox.last_link(NEW)
        traveller.shift(timedelta(seconds=86400 + 1))
        sign_in(client)  # the first login session has timed out by now
        assert client.get(link).status_code == 400
        assert post_signed_in(client, link).status_code == 400
    assert get_user(app, OLD) is not None


def test_email_taken_before_the_link_is_opened_is_refused(app, signed_in, mailbox):
    """When someone else registers the new address first, the link no longer works."""
    request_change(signed_in)
    link = mailbox.last_link(NEW)
    page = signed_in.get(link)
    add_user(app, NEW)
    response = signed_in.post(link, data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 400 and INVALID in response.data.decode()
    assert get_user(app, OLD) is not None
    assert audit_events(app, "user.email_changed") == []
