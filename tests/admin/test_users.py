"""/admin/users: search, a user's page, and every action on it, through the services the
admin API calls; what each built-in role may see and do; the forms' guards (CSRF, fresh
proof, typed confirmation, stale versions)."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from identity.admin import user_pages
from tests.admin.conftest import REAUTH, submit
from tests.conftest import Mailbox, csrf_token, sign_in
from tests.functional.conftest import audit_events, get_user

Operator = Callable[..., FlaskClient]


def fresh(app: Flask) -> None:
    """Roles given outside a request reach no unit of work that would tell this process's
    policy cache: drop it, as tests/api/conftest.py give_roles does."""
    app.extensions["identity"].rbac.invalidate()


@pytest.fixture
def make_user(app: Flask, make_user: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> Any:
        made = make_user(*args, **kwargs)
        fresh(app)
        return made

    return factory


@pytest.fixture
def operator(app: Flask, operator: Operator) -> Operator:
    def factory(*roles: str, **kwargs: Any) -> FlaskClient:
        client = operator(*roles, **kwargs)
        fresh(app)
        return client

    return factory


def page_of(user_id: uuid.UUID) -> str:
    return f"/admin/users/{user_id}"


def act(client: FlaskClient, user_id: uuid.UUID, action: str, **data: str) -> Any:
    """POST an action of a user's page with the page's CSRF token (the sign-out page's for
    an operator offered no form there: the token is the session's)."""
    shown = client.get(page_of(user_id)).text
    if 'name="csrf_token"' not in shown:
        shown = client.get("/sign-out").text
    return client.post(
        f"{page_of(user_id)}/{action}", data={"csrf_token": csrf_token(shown), **data}
    )


def flashed(client: FlaskClient, answer: Any) -> str:
    """The page a 303 leads to (where the flash shows)."""
    assert answer.status_code == 303, answer.text
    return str(client.get(answer.location).text)


def version(client: FlaskClient, user_id: uuid.UUID) -> str:
    text = client.get(page_of(user_id)).text
    match = re.search(r'name="version" value="([^"]+)"', text)
    assert match, "no version on the page"
    return match.group(1).replace("&#34;", '"').replace("&quot;", '"')


def add_group(app: Flask, name: str, *emails: str) -> None:
    from identity.extensions import db
    from identity.models.user import User
    from identity.rbac import service as rbac

    with app.app_context():
        group = rbac.create_group(db.session, name)
        for email in emails:
            user = db.session.execute(select(User).where(User.email == email)).scalar_one()
            rbac.add_member(db.session, group, user)
        db.session.commit()
    fresh(app)


def id_of(app: Flask, email: str) -> uuid.UUID:
    return get_user(app, email).id  # type: ignore[no-any-return]


# The list ----------------------------------------------------------------------------------


def test_search_and_filters(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    make_user("alice@example.org", name="Alice Liddell")
    make_user("bob@example.org", verified=False)
    carol = make_user("carol@example.org", roles=("auditor",))
    add_group(app, "staff", "bob@example.org")
    with app.app_context():
        from identity.extensions import db
        from identity.models.base import utcnow
        from identity.models.user import User

        db.session.get(User, carol).disabled_at = utcnow()
        db.session.commit()

    def emails(query: str) -> list[str]:
        answer = admin.get(f"/admin/users?{query}")
        assert answer.status_code == 200, answer.text
        return re.findall(r'<a href="/admin/users/[0-9a-f-]+">([^<]+)</a>', answer.text)

    assert emails("q=LIDDELL") == ["alice@example.org"]
    assert emails("state=unverified") == ["bob@example.org"]
    assert emails("state=disabled") == ["carol@example.org"]
    assert "carol@example.org" not in emails("state=active")
    assert emails("role=auditor") == ["carol@example.org"]
    assert emails("group=staff") == ["bob@example.org"]
    assert emails("q=nobody-here") == []
    unknown = admin.get("/admin/users?group=nope")
    assert unknown.status_code == 400
    assert "no group named" in unknown.text
    assert admin.get("/admin/users?cursor=!!").status_code == 400


def test_pages_through_the_list(
    app: Flask, admin: FlaskClient, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        make_user(f"p{n}@example.org")
    monkeypatch.setattr(user_pages, "PAGE_SIZE", 2)
    seen: list[str] = []
    url: str | None = "/admin/users?q=%40example.org"
    while url:
        text = admin.get(url).text
        seen += re.findall(r'<a href="/admin/users/[0-9a-f-]+">([^<]+)</a>', text)
        found = re.search(r'<a href="([^"]+)" rel="next">', text)
        url = found.group(1).replace("&amp;", "&") if found else None
        assert url is None or "q=@example.org" in url  # the filters are kept
    assert seen == sorted(seen) and len(seen) == 5  # p0..p3 and the admin


def test_list_links_and_refusals_per_role(operator: Operator) -> None:
    admin = operator("admin").get("/admin/users").text
    assert "Create user" in admin and "Invite" in admin
    manager = operator("user-manager").get("/admin/users").text
    assert "Create user" in manager
    auditor = operator("auditor")
    assert "Create user" not in auditor.get("/admin/users").text
    assert auditor.get("/admin/users/new").status_code == 403
    assert auditor.get("/admin/users/invite").status_code == 403
    assert operator().get("/admin/users").status_code == 403


# A user's page -----------------------------------------------------------------------------


def test_user_page_shows_the_account(app: Flask, operator: Operator, make_user: Any) -> None:
    target = make_user("dora@example.org", name="Dora", roles=("auditor",))
    add_group(app, "ops", "dora@example.org")
    assert sign_in(app.test_client(), "dora@example.org").status_code == 303
    admin = operator("admin")
    text = admin.get(page_of(target)).text
    for shown in (
        "Dora",
        "<code>auditor</code>",
        "<code>ops</code>",
        "Login sessions",
        "Connected apps",
        "Second factors",
        "Recent audit events",
        "user.sign_in",
        "Erase this user",
        "Sign out everywhere",
        "Give the admin role",
    ):
        assert shown in text, shown
    assert text.count("<h1") == 1
    assert admin.get(page_of(uuid.uuid4())).status_code == 404

    # The auditor reads it all and is offered no action.
    auditor = operator("auditor").get(page_of(target)).text
    assert "Recent audit events" in auditor and "Login sessions" in auditor
    assert 'method="post"' not in auditor.split('aria-label="Admin console"')[1]
    # A user manager acts on users but does not read the audit trail.
    manager = operator("user-manager").get(page_of(target)).text
    assert "Recent audit events" not in manager
    assert "/disable" in manager and "/roles" in manager


# Creating and inviting ---------------------------------------------------------------------


def test_create_user(app: Flask, admin: FlaskClient, mailbox: Mailbox) -> None:
    answer = submit(
        admin,
        "/admin/users/new",
        email="New.Person@Example.org",
        name="New Person",
        password="a perfectly long passphrase 42",
        email_verified="on",
    )
    assert "new.person@example.org was created." in flashed(admin, answer)
    user = get_user(app, "new.person@example.org")
    assert user.is_verified and user.name == "New Person"
    (event,) = audit_events(app, "user.create")[-1:]
    assert event["actor_id"] == id_of(app, admin.email)  # type: ignore[attr-defined]
    assert not mailbox.to("new.person@example.org")

    # Without a password: a link to choose one.
    answer = submit(admin, "/admin/users/new", email="linked@example.org")
    assert "mailed a link" in flashed(admin, answer)
    assert "/reset-password/" in mailbox.last_link("linked@example.org")

    taken = submit(admin, "/admin/users/new", email="linked@example.org")
    assert taken.status_code == 409 and "already exists" in taken.text
    weak = submit(admin, "/admin/users/new", email="weak@example.org", password="short")
    assert weak.status_code == 400 and get_user(app, "weak@example.org") is None
    bad = submit(admin, "/admin/users/new", email="not an address")
    assert bad.status_code == 422


def test_invite(app: Flask, operator: Operator) -> None:
    mailbox = Mailbox(app)
    admin = operator("admin")
    answer = submit(admin, "/admin/users/invite", email="guest@example.org", role="auditor")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    link = re.search(r'data-testid="invitation-link">(\S+/register\?invite=[^<]+)<', answer.text)
    assert link, answer.text
    assert "We mailed this link to guest@example.org" in answer.text
    [mail] = mailbox.to("guest@example.org")
    assert link.group(1) in mail.get_content()
    assert audit_events(app, "invitation.create")

    # Inviting as admin is giving the admin role: a fresh proof first.
    before = len(audit_events(app, "invitation.create"))
    refused = submit(admin, "/admin/users/invite", email="boss@example.org", role="admin")
    assert refused.status_code == 400
    assert len(audit_events(app, "invitation.create")) == before
    assert mailbox.to("boss@example.org") == []
    answer = submit(admin, "/admin/users/invite", email="boss@example.org", role="admin", **REAUTH)
    assert "Invitation created" in answer.text

    # A user manager cannot invite into a role holding more than it holds.
    manager = operator("user-manager")
    refused = submit(manager, "/admin/users/invite", email="x@example.org", role="auditor")
    assert refused.status_code == 403
    assert "you cannot grant what you do not hold" in refused.text
    assert len(audit_events(app, "invitation.create")) == before + 1
    # Without an address the link is only shown, for the operator to send.
    answer = submit(manager, "/admin/users/invite")
    assert "Send this link to the person you invite" in answer.text


# Changing the profile ----------------------------------------------------------------------


def test_edit_profile_with_stale_check(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    target = make_user("erin@example.org", name="Erin")
    make_user("taken@example.org")
    seen = version(admin, target)
    answer = act(
        admin,
        target,
        "profile",
        version=seen,
        name="Erin Two",
        email="erin@example.org",
        email_verified="on",
    )
    assert "Saved: name." in flashed(admin, answer)
    assert get_user(app, "erin@example.org").name == "Erin Two"
    (event,) = audit_events(app, "user.updated")
    assert event["subject_id"] == target

    # The form read before that change is stale: refused, nothing overwritten.
    stale = act(
        admin,
        target,
        "profile",
        version=seen,
        name="Old Form",
        email="erin@example.org",
        email_verified="on",
    )
    assert stale.status_code == 409
    assert "Someone changed this user" in stale.text and 'value="Erin Two"' in stale.text
    assert get_user(app, "erin@example.org").name == "Erin Two"

    taken = act(
        admin,
        target,
        "profile",
        version=version(admin, target),
        name="Erin Two",
        email="taken@example.org",
        email_verified="on",
    )
    assert taken.status_code == 409 and "already exists" in taken.text
    assert get_user(app, "erin@example.org") is not None
    assert len(audit_events(app, "user.updated")) == 1


# Disable, enable, mails, factors, sessions -------------------------------------------------


def test_disable_and_enable(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    target = make_user("fay@example.org")
    other = app.test_client()
    sign_in(other, "fay@example.org")
    assert "is disabled" in flashed(admin, act(admin, target, "disable"))
    assert not get_user(app, "fay@example.org").is_active
    assert other.get("/account").status_code == 302  # signed out
    assert "is enabled" in flashed(admin, act(admin, target, "enable"))
    assert get_user(app, "fay@example.org").is_active
    assert [e["subject_id"] for e in audit_events(app, "user.disabled")] == [target]
    assert [e["subject_id"] for e in audit_events(app, "user.enabled")] == [target]


def test_the_last_admin_stays(app: Flask, admin: FlaskClient) -> None:
    me = id_of(app, admin.email)  # type: ignore[attr-defined]
    text = flashed(admin, act(admin, me, "disable"))
    assert "no active administrator" in text and 'class="notice notice-error"' in text
    assert get_user(app, admin.email).is_active  # type: ignore[attr-defined]
    assert not audit_events(app, "user.disabled")


def test_AUTHZ_07_a_user_manager_cannot_act_on_an_admin(app: Flask, operator: Operator) -> None:
    admin = operator("admin", email="boss@example.org")
    target = id_of(app, "boss@example.org")
    manager = operator("user-manager")
    for action, data in (
        ("disable", {}),
        ("factors/reset", {}),
        ("sessions/revoke", {}),
        ("export", {}),
        ("erase", {"confirm": "boss@example.org", **REAUTH}),
    ):
        text = flashed(manager, act(manager, target, action, **data))
        assert "holds permissions you do not hold" in text, action
    assert admin.get("/admin/users").status_code == 200  # still signed in, still enabled
    for event in (
        "user.disabled",
        "mfa.factors_reset",
        "session.revoked_all",
        "gdpr.erased",
        "gdpr.export_by_operator",
    ):
        assert not audit_events(app, event), event


def test_mails(app: Flask, admin: FlaskClient, make_user: Any, mailbox: Mailbox) -> None:
    target = make_user("gil@example.org", verified=False)
    assert "verification link" in flashed(admin, act(admin, target, "verification"))
    assert "/verify-email/" in mailbox.last_link("gil@example.org")
    assert "reset link" in flashed(admin, act(admin, target, "password-reset"))
    assert "/reset-password/" in mailbox.last_link("gil@example.org")
    assert audit_events(app, "user.password_reset_requested")[-1]["subject_id"] == target


def test_mails_are_refused_for_a_verified_or_disabled_account(
    app: Flask, admin: FlaskClient, make_user: Any, mailbox: Mailbox
) -> None:
    verified = make_user("pia@example.org")
    text = flashed(admin, act(admin, verified, "verification"))
    assert "pia@example.org is verified already." in text
    disabled = make_user("quin@example.org", verified=False)
    flashed(admin, act(admin, disabled, "disable"))
    for action in ("verification", "password-reset"):
        text = flashed(admin, act(admin, disabled, action))
        assert "quin@example.org is disabled: enable them first." in text, action
        assert 'class="notice notice-error"' in text
    assert mailbox.to("pia@example.org") == [] and mailbox.to("quin@example.org") == []
    assert not audit_events(app, "user.password_reset_requested")


def assignment_of(app: Flask, user_id: uuid.UUID, role: str) -> uuid.UUID:
    from identity.extensions import db
    from identity.models.rbac import Role, RoleAssignment

    with app.app_context():
        return db.session.execute(  # type: ignore[no-any-return]
            select(RoleAssignment.id)
            .join(Role, Role.id == RoleAssignment.role_id)
            .where(RoleAssignment.user_id == user_id, Role.name == role)
        ).scalar_one()


def test_a_user_manager_cannot_mail_or_demote_an_admin(
    app: Flask, operator: Operator, make_user: Any, mailbox: Mailbox
) -> None:
    """Mailing a reset or verification link to someone, or taking a role from them, is
    acting on them: refused when they hold a permission the operator lacks, even for a
    role the operator could give."""
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        rbac.create_role(db.session, "helper", permissions=["users:read"])
        db.session.commit()
    operator("admin", email="root@example.org")
    boss = make_user("boss@example.org", verified=False, roles=("admin", "helper"))
    plain = make_user("plain@example.org", verified=False, roles=("helper",))
    manager = operator("user-manager")

    for action in ("verification", "password-reset"):
        text = flashed(manager, act(manager, boss, action))
        assert "holds permissions you do not hold" in text, action
    assert mailbox.to("boss@example.org") == []
    assert not audit_events(app, "user.password_reset_requested")

    def take(user_id: uuid.UUID) -> str:
        shown = manager.get(page_of(user_id)).text
        assignment = assignment_of(app, user_id, "helper")
        answer = manager.post(
            f"{page_of(user_id)}/roles/{assignment}/remove",
            data={"csrf_token": csrf_token(shown)},
        )
        return flashed(manager, answer)

    assert "holds permissions you do not hold" in take(boss)
    assert get_user(app, "boss@example.org").role_names == ["admin", "helper"]
    assert not audit_events(app, "role.unassign")

    # Someone holding nothing more than the manager: mailed, and the role taken back.
    assert "verification link" in flashed(manager, act(manager, plain, "verification"))
    assert "reset link" in flashed(manager, act(manager, plain, "password-reset"))
    assert len(mailbox.to("plain@example.org")) == 2
    assert "taken back" in take(plain)
    assert get_user(app, "plain@example.org").role_names == []


def test_reset_factors_and_sessions(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    target = make_user("hal@example.org")
    other = app.test_client()
    sign_in(other, "hal@example.org")
    assert "no second factor" in flashed(admin, act(admin, target, "factors/reset"))
    assert audit_events(app, "mfa.factors_reset")[-1]["subject_id"] == target
    assert "signed out everywhere (1 sessions ended)" in flashed(
        admin, act(admin, target, "sessions/revoke")
    )
    assert other.get("/account").status_code == 302
    assert audit_events(app, "session.revoked_all")[-1]["subject_id"] == target


def test_export(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():  # the bundle is signed
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, ("ES256",))
        db.session.commit()
    target = make_user("ida@example.org")
    answer = act(admin, target, "export")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert "attachment" in answer.headers["Content-Disposition"]
    assert "data.json" in zipfile.ZipFile(io.BytesIO(answer.data)).namelist()
    assert audit_events(app, "gdpr.export_by_operator")[-1]["subject_id"] == target


# Erasing -----------------------------------------------------------------------------------


def test_AUTHZ_13_erase_asks_proof_and_the_typed_email(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    target = make_user("jo@example.org")
    wrong = act(admin, target, "erase", confirm="jo@example.org", reauth="not my password")
    assert wrong.status_code == 400 and "password or authenticator code" in wrong.text
    typo = act(admin, target, "erase", confirm="jo@example.com", **REAUTH)
    assert typo.status_code == 400 and "Type jo@example.org exactly" in typo.text
    assert get_user(app, "jo@example.org") is not None
    assert not audit_events(app, "gdpr.erased")

    answer = act(admin, target, "erase", confirm="jo@example.org", **REAUTH)
    assert answer.location.endswith("/admin/users")
    assert "The user is erased (receipt" in flashed(admin, answer)
    assert get_user(app, "jo@example.org") is None
    assert audit_events(app, "gdpr.erased")[-1]["actor_id"] == id_of(app, admin.email)  # type: ignore[attr-defined]


# Roles -------------------------------------------------------------------------------------


def test_give_and_take_roles(app: Flask, operator: Operator, make_user: Any) -> None:
    admin = operator("admin")
    target = make_user("kim@example.org")
    assert "now has the role auditor" in flashed(admin, act(admin, target, "roles", role="auditor"))
    assert get_user(app, "kim@example.org").role_names == ["auditor"]
    assert audit_events(app, "role.assign")[-1]["subject_id"] == target
    text = admin.get(page_of(target)).text
    take = re.search(r'action="(/admin/users/[^"]+/remove)"', text)
    assert take
    answer = admin.post(take.group(1), data={"csrf_token": csrf_token(text)})
    assert "taken back" in flashed(admin, answer)
    assert get_user(app, "kim@example.org").role_names == []
    assert audit_events(app, "role.unassign")[-1]["subject_id"] == target
    again = admin.post(take.group(1), data={"csrf_token": csrf_token(text)})
    assert again.status_code == 404

    # The admin role needs a fresh proof.
    refused = act(admin, target, "roles", role="admin", reauth="wrong")
    assert refused.status_code == 400
    assert get_user(app, "kim@example.org").role_names == []
    assert "now has the role admin" in flashed(
        admin, act(admin, target, "roles", role="admin", **REAUTH)
    )

    # A user manager may assign roles, not one holding more than it holds.
    other = make_user("lee@example.org")
    manager = operator("user-manager")
    text = flashed(manager, act(manager, other, "roles", role="admin", **REAUTH))
    assert "you cannot grant what you do not hold" in text
    assert get_user(app, "lee@example.org").role_names == []


# Guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "profile",
        "disable",
        "verification",
        "password-reset",
        "factors/reset",
        "sessions/revoke",
        "export",
        "erase",
        "roles",
    ],
)
def test_AUTHZ_07_the_auditor_changes_nothing(
    app: Flask, operator: Operator, make_user: Any, action: str
) -> None:
    target = make_user("mo@example.org", verified=False)
    auditor = operator("auditor")
    before = len(audit_events(app))
    answer = act(auditor, target, action, role="auditor", confirm="mo@example.org", **REAUTH)
    assert answer.status_code == 403
    assert len(audit_events(app)) == before
    assert get_user(app, "mo@example.org").is_active


def test_WEB_01_a_post_without_csrf_token_is_refused(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    target = make_user("ned@example.org")
    answer = admin.post(f"{page_of(target)}/disable")
    assert answer.status_code == 400
    assert get_user(app, "ned@example.org").is_active
    answer = admin.post("/admin/users/new", data={"email": "csrf@example.org"})
    assert answer.status_code == 400 and get_user(app, "csrf@example.org") is None
