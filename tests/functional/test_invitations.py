"""Invitation-only registration (AUTH-14): single use, expiry, bound to an email and role."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from identity.accounts.management import create_invitation
from identity.errors import InvalidInput
from identity.extensions import db
from identity.models.base import utcnow
from identity.models.user import Invitation, User
from identity.random_tokens import token_hash
from identity.runtime import runtime
from tests.conftest import PASSWORD, csrf_token
from tests.functional.conftest import add_role, add_user, count, get_user

CLOSED = "Accounts are created by invitation only."
USED = "This invitation is invalid, used or expired."


def invite(app, **kwargs):
    """Create an invitation; returns its token."""
    with app.app_context():
        link = create_invitation(db.session, runtime(), **kwargs)
        db.session.commit()
    assert link.startswith("http://127.0.0.1:8000/register?invite=")
    return parse_qs(urlsplit(link).query)["invite"][0]


def register(app, token, email="new@example.org", **extra):
    client = app.test_client()
    page = client.get("/register", query_string={"invite": token})
    if page.status_code != 200:
        return page
    data = {
        "csrf_token": csrf_token(page.data),
        "email": email,
        "password": PASSWORD,
        "invite": token,
        **extra,
    }
    return client.post("/register", data=data)


def test_AUTH_14_registration_without_invitation_is_refused(invite_app):
    """Without an invitation the page and the POST answer 403 and create nothing."""
    client = invite_app.test_client()
    response = client.get("/register")
    assert response.status_code == 403
    assert CLOSED in response.data.decode()
    token = csrf_token(client.get("/sign-in").data)
    data = {"csrf_token": token, "email": "new@example.org", "password": PASSWORD}
    assert client.post("/register", data=data).status_code == 403
    assert count(invite_app, User) == 0
    assert 'href="/register"' not in client.get("/sign-in").data.decode()


def test_AUTH_14_invitation_registers_once(invite_app, invite_mailbox):
    """An invitation creates one account, mails its verification, and is then used up."""
    token = invite(invite_app)
    page = invite_app.test_client().get("/register", query_string={"invite": token})
    assert page.status_code == 200
    assert f'name="invite" type="hidden" value="{token}"' in page.data.decode()
    # A mail scanner's HEAD sees the same page as a GET (it used to be taken for a POST).
    head = invite_app.test_client().head("/register", query_string={"invite": token})
    assert head.status_code == 200
    response = register(invite_app, token)
    assert response.status_code == 303
    assert response.headers["Location"] == "/register/sent"
    assert invite_mailbox.last_link("new@example.org").startswith("/verify-email/")

    again = register(invite_app, token, "second@example.org")
    assert again.status_code == 403
    assert CLOSED in again.data.decode()
    assert get_user(invite_app, "second@example.org") is None
    new_id = get_user(invite_app, "new@example.org").id
    with invite_app.app_context():
        used = db.session.query(Invitation).one()
        assert used.used_at is not None
        assert used.used_by_id == new_id


def test_AUTH_14_used_invitation_cannot_be_replayed_in_the_form(invite_app):
    """Posting a used token in the hidden field (page opened before use) is refused."""
    token = invite(invite_app)
    client = invite_app.test_client()
    page = client.get("/register", query_string={"invite": token})
    assert register(invite_app, token).status_code == 303
    data = {
        "csrf_token": csrf_token(page.data),
        "email": "late@example.org",
        "password": PASSWORD,
        "invite": token,
    }
    assert client.post("/register", data=data).status_code == 403
    assert get_user(invite_app, "late@example.org") is None


def test_AUTH_14_expired_invitation_is_refused(invite_app):
    """An invitation past its lifetime no longer opens registration."""
    token = invite(invite_app, now=utcnow() - timedelta(days=8))
    response = register(invite_app, token)
    assert response.status_code == 403
    assert CLOSED in response.data.decode()


def test_AUTH_14_invitation_lifetime_is_honoured(invite_app):
    """A one-hour invitation works within the hour."""
    token = invite(invite_app, lifetime=3600, now=utcnow() - timedelta(minutes=59))
    assert register(invite_app, token).status_code == 303


def test_AUTH_14_guessed_tokens_are_refused(invite_app):
    """Made-up, empty and over-long tokens are refused."""
    invite(invite_app)
    for guess in ("", "1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 500):
        assert register(invite_app, guess).status_code == 403, guess


def test_AUTH_14_tokens_are_random_and_stored_only_hashed(invite_app):
    """Tokens are long CSPRNG strings; the database keeps only their SHA-256."""
    tokens = {invite(invite_app) for _ in range(5)}
    assert len(tokens) == 5
    assert all(len(token) >= 43 for token in tokens)
    with invite_app.app_context():
        stored = {row.token_hash for row in db.session.query(Invitation)}
    assert stored == {token_hash(token) for token in tokens}


def test_AUTH_14_invitation_bound_to_an_email(invite_app):
    """An email-bound invitation refuses other addresses and accepts its own in any case."""
    token = invite(invite_app, email="Invited@Example.org")
    response = register(invite_app, token, "intruder@example.org")
    assert response.status_code == 400
    assert USED in response.data.decode()
    assert get_user(invite_app, "intruder@example.org") is None
    assert register(invite_app, token, "INVITED@example.org").status_code == 303
    assert get_user(invite_app, "invited@example.org") is not None


def test_AUTH_14_invitation_grants_its_role_and_only_that(invite_app):
    """The role comes from the invitation; a role field in the form is ignored."""
    add_role(invite_app, "editor")
    add_role(invite_app, "admin")
    token = invite(invite_app, role="editor")
    assert register(invite_app, token, role="admin", roles="admin").status_code == 303
    assert get_user(invite_app, "new@example.org").role_names == ["editor"]


def test_AUTH_14_plain_invitation_grants_no_role(invite_app):
    """An invitation without a role creates an account without roles."""
    add_role(invite_app, "admin")
    token = invite(invite_app)
    assert register(invite_app, token, role="admin").status_code == 303
    assert get_user(invite_app, "new@example.org").role_names == []


def test_AUTH_14_invitation_for_an_unknown_role_is_refused(invite_app):
    """create_invitation refuses a role that does not exist."""
    with invite_app.app_context(), pytest.raises(InvalidInput, match="unknown role"):
        create_invitation(db.session, runtime(), role="superuser")


def test_an_invitation_gives_only_a_role_its_inviter_holds(invite_app):
    """Whoever calls create_invitation with an actor (the console, any other caller) cannot
    invite into a role holding a permission the actor lacks; the operator at the command
    (no actor) may invite into any role. Refused, nothing is stored or audited."""
    from identity.exceptions import Forbidden
    from identity.rbac.service import Principal
    from tests.functional.conftest import audit_events

    manager = add_user(invite_app, "manager@example.org", roles=("user-manager",))
    boss = add_user(invite_app, "boss@example.org", roles=("admin",))
    with invite_app.app_context():
        for role in ("auditor", "admin"):
            with pytest.raises(Forbidden, match="you cannot grant what you do not hold"):
                create_invitation(
                    db.session, runtime(), role=role, actor=Principal("user", manager)
                )
        db.session.rollback()
    assert count(invite_app, Invitation) == 0
    assert audit_events(invite_app, "invitation.create") == []

    invite(invite_app, role="user-manager", actor=Principal("user", manager))
    invite(invite_app, role="admin", actor=Principal("user", boss))
    invite(invite_app, role="admin")  # the operator at the command
    events = audit_events(invite_app, "invitation.create")
    assert [e["actor_id"] for e in events] == [manager, boss, None]
    with invite_app.app_context():
        creators = {row.created_by_id for row in db.session.query(Invitation)}
    assert creators == {manager, boss, None}


def test_AUTH_14_weak_password_keeps_the_invitation(invite_app):
    """A refused password does not use up the invitation."""
    token = invite(invite_app)
    client = invite_app.test_client()
    page = client.get("/register", query_string={"invite": token})
    data = {
        "csrf_token": csrf_token(page.data),
        "email": "new@example.org",
        "password": "password1234",
        "invite": token,
    }
    assert client.post("/register", data=data).status_code == 400
    assert register(invite_app, token).status_code == 303


def test_AUTH_12_invitation_for_a_taken_email_looks_like_success(invite_app, invite_mailbox):
    """Using an invitation with a registered email answers like a new account."""
    add_user(invite_app, "taken@example.org")
    token = invite(invite_app)
    response = register(invite_app, token, "taken@example.org")
    assert response.status_code == 303
    assert response.headers["Location"] == "/register/sent"
    assert invite_mailbox.to("taken@example.org")[-1]["Subject"].startswith("Someone tried")
