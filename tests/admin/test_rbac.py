"""The console's roles, permissions, groups and decision explorer under the Flask test
client: each page and action, who may take it, the proofs sensitive actions ask, stale
forms, and the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.admin.conftest import REAUTH, submit
from tests.conftest import csrf_token
from tests.functional.conftest import audit_events
from tests.oauth.conftest import keys, make_client  # noqa: F401 - fixtures

BILLING = {"name": "billing-viewer", "description": "Sees invoices", "more": "invoices:read"}


def state(app: Flask) -> dict[str, Any]:
    """Roles (permissions, parents), groups (parent, members) and assignments, by name."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.rbac import Group, Role
    from identity.rbac import service as rbac

    with app.app_context():
        session = db.session
        roles = {
            r.name: (r.description, rbac.permissions_of(session, r), rbac.parents_of(session, r))
            for r in session.execute(select(Role)).scalars()
        }
        groups = {
            g.name: (g.description, g.parent_id, [u.email for u in rbac.members_of(session, g)])
            for g in session.execute(select(Group)).scalars()
        }
        snapshot = rbac.load_snapshot(session)
        held = {
            user: sorted(snapshot.roles[g.role].name for g in grants)
            for user, grants in snapshot.grants.items()
        }
        return {"roles": roles, "groups": groups, "grants": held}


def user_id(app: Flask, email: str) -> Any:
    from identity.extensions import db
    from identity.models.user import user_by_email

    with app.app_context():
        return user_by_email(db.session, email).id  # type: ignore[union-attr]


def version(html: str) -> str:
    match = re.search(r'name="version" value="([^"]+)"', html)
    assert match
    return match.group(1).replace("&#34;", '"')


@pytest.fixture
def billing(admin: FlaskClient) -> FlaskClient:
    """billing-viewer (invoices:read) and billing-approver, which inherits it."""
    assert submit(admin, "/admin/roles/-/new", **BILLING).status_code == 303
    answer = submit(
        admin,
        "/admin/roles/-/new",
        name="billing-approver",
        more="invoices:approve",
        parent="billing-viewer",
    )
    assert answer.status_code == 303
    return admin


def post(client: FlaskClient, action: str, **data: str) -> Any:
    """POST as a browser would, for an operator whose console pages have no form (the CSRF
    token comes from an account page)."""
    return submit(client, "/account/name", action, **data)


def give(client: FlaskClient, role: str, **data: str) -> Any:
    return submit(client, f"/admin/roles/{role}", f"/admin/roles/{role}/holders", **data)


# Roles --------------------------------------------------------------------------------------


def test_roles_page_draws_inheritance(app: Flask, billing: FlaskClient) -> None:
    page = billing.get("/admin/roles")
    assert page.status_code == 200
    text = page.text
    tree = text.split('<div class="tree">', 1)[1].split("</figure>", 1)[0]
    # billing-approver is drawn inside billing-viewer's branch, and says what it inherits.
    viewer = tree.split(">billing-viewer</a>", 1)[1]
    assert ">billing-approver</a>" in viewer.split("</li>", 1)[0]
    assert "inherits billing-viewer" in tree
    assert 'aria-labelledby="inheritance-title"' in text
    assert '<span class="badge">built-in</span>' in text
    assert "<code>invoices:read</code>" in text
    assert 'href="/admin/roles/-/new"' in text  # roles:write


def test_create_role_is_audited(app: Flask, admin: FlaskClient) -> None:
    answer = submit(admin, "/admin/roles/-/new", permission=["users:read"], **BILLING)
    assert answer.status_code == 303
    assert answer.location.endswith("/admin/roles/billing-viewer")
    assert state(app)["roles"]["billing-viewer"] == (
        "Sees invoices",
        ["invoices:read", "users:read"],
        [],
    )
    (event,) = audit_events(app, "role.create")
    assert event["data"]["role"] == "billing-viewer"
    assert "created" in admin.get(answer.location).text


def test_create_role_shows_the_services_refusal(app: Flask, admin: FlaskClient) -> None:
    answer = submit(admin, "/admin/roles/-/new", name="odd", more="Invoices:READ")
    assert answer.status_code == 400
    assert "not a permission a role can hold" in answer.text
    assert 'value="odd"' in answer.text  # the form keeps what was typed
    assert "odd" not in state(app)["roles"]  # the half-made role is gone
    assert submit(admin, "/admin/roles/-/new", name="Bad Name").status_code == 400
    assert submit(admin, "/admin/roles/-/new", name="admin").status_code == 409


def test_role_page_shows_inherited_permissions_and_holders(
    app: Flask, billing: FlaskClient, make_user: Any
) -> None:
    make_user("bob@example.org")
    assert give(billing, "billing-approver", holder="bob@example.org").status_code == 303
    page = billing.get("/admin/roles/billing-approver").text
    assert "through role billing-viewer" in page
    bob = user_id(app, "bob@example.org")
    assert f'<td><a href="/admin/users/{bob}">bob@example.org</a></td>' in page
    viewer = billing.get("/admin/roles/billing-viewer").text
    assert 'Inherited by</dt>\n    <dd><a href="/admin/roles/billing-approver">' in viewer
    assert billing.get("/admin/roles/nothing").status_code == 404


def test_update_role_and_stale_version(app: Flask, billing: FlaskClient) -> None:
    page = billing.get("/admin/roles/billing-viewer").text
    old = version(page)
    answer = submit(
        billing,
        "/admin/roles/billing-viewer",
        "/admin/roles/billing-viewer/edit",
        version=old,
        description="Reads invoices",
        more="invoices:read\ninvoices:list",
    )
    assert answer.status_code == 303
    assert state(app)["roles"]["billing-viewer"][:2] == (
        "Reads invoices",
        ["invoices:list", "invoices:read"],
    )
    (event,) = audit_events(app, "role.update")
    assert event["data"]["changed"]["permissions"]["to"] == ["invoices:list", "invoices:read"]
    # The form read before that change is stale: refused, nothing overwritten.
    stale = submit(
        billing,
        "/admin/roles/billing-viewer",
        "/admin/roles/billing-viewer/edit",
        version=old,
        description="Overwritten",
    )
    assert stale.status_code == 409
    assert "changed this role meanwhile" in stale.text
    assert 'value="Reads invoices"' in stale.text  # the current values
    assert state(app)["roles"]["billing-viewer"][0] == "Reads invoices"


def test_update_refuses_a_loop(app: Flask, billing: FlaskClient) -> None:
    page = billing.get("/admin/roles/billing-viewer").text
    answer = submit(
        billing,
        "/admin/roles/billing-viewer",
        "/admin/roles/billing-viewer/edit",
        version=version(page),
        more="invoices:read",
        parent="billing-approver",
    )
    assert answer.status_code == 400
    assert "cannot loop" in answer.text
    assert state(app)["roles"]["billing-viewer"][2] == []


def test_builtin_role_keeps_its_permissions_and_cannot_be_deleted(
    app: Flask, admin: FlaskClient
) -> None:
    page = admin.get("/admin/roles/auditor").text
    assert "only its description changes" in page
    assert 'name="permission"' not in page
    answer = submit(
        admin,
        "/admin/roles/auditor",
        "/admin/roles/auditor/edit",
        version=version(page),
        description="Reads",
    )
    assert answer.status_code == 303
    refused = submit(
        admin, "/admin/roles/auditor", "/admin/roles/auditor/delete", confirm="auditor", **REAUTH
    )
    assert refused.status_code == 409
    assert "auditor is built in and cannot be deleted" in refused.text
    assert "auditor" in state(app)["roles"]


def test_AUTHZ_13_delete_role_asks_password_and_name(app: Flask, billing: FlaskClient) -> None:
    page, action = "/admin/roles/billing-approver", "/admin/roles/billing-approver/delete"
    wrong_password = submit(billing, page, action, confirm="billing-approver", reauth="nope")
    assert wrong_password.status_code == 400
    assert "not right" in wrong_password.text
    wrong_name = submit(billing, page, action, confirm="billing-viewer", **REAUTH)
    assert wrong_name.status_code == 400
    assert "billing-approver" in state(app)["roles"]
    assert audit_events(app, "role.delete") == []
    done = submit(billing, page, action, confirm="billing-approver", **REAUTH)
    assert done.status_code == 303
    assert done.location.endswith("/admin/roles")
    assert "billing-approver" not in state(app)["roles"]
    assert audit_events(app, "role.delete")[0]["data"]["role"] == "billing-approver"


def test_give_and_take_a_role(app: Flask, billing: FlaskClient, make_user: Any) -> None:
    bob = make_user("bob@example.org")
    assert give(billing, "billing-viewer", holder="Bob@Example.org").status_code == 303
    assert state(app)["grants"][bob] == ["billing-viewer"]
    event = audit_events(app, "role.assign")[-1]
    assert event["subject_id"] == bob and event["data"]["role"] == "billing-viewer"
    unknown = give(billing, "billing-viewer", holder="nobody@example.org")
    assert unknown.status_code == 400
    assert "no user with email" in unknown.text
    again = give(billing, "billing-viewer", holder="bob@example.org")
    assert again.status_code == 409
    page = billing.get("/admin/roles/billing-viewer").text
    take = re.search(r'action="(/admin/roles/billing-viewer/holders/[^"]+/delete)"', page)
    assert take
    assert submit(billing, "/admin/roles/billing-viewer", take.group(1)).status_code == 303
    assert bob not in state(app)["grants"]
    assert audit_events(app, "role.unassign")[0]["subject_id"] == bob


def test_give_to_a_group_and_a_client(
    app: Flask,
    billing: FlaskClient,
    make_client: Callable[..., Any],  # noqa: F811 - the fixture imported above
) -> None:
    rp = make_client()
    assert submit(billing, "/admin/groups/-/new", name="finance").status_code == 303
    assert give(billing, "billing-viewer", kind="group", holder="finance").status_code == 303
    answer = give(billing, "billing-viewer", kind="client", holder=rp.client_id, scope=rp.client_id)
    assert answer.status_code == 303
    page = billing.get("/admin/roles/billing-viewer").text
    assert '<a href="/admin/groups/finance">finance</a>' in page
    assert f"only in client <code>{rp.client_id}</code>" in page
    assert give(billing, "billing-viewer", kind="group", holder="nope").status_code == 400


def test_AUTHZ_13_giving_admin_needs_a_fresh_proof(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    bob = make_user("bob@example.org")
    page = admin.get("/admin/roles/admin").text
    assert 'id="give-reauth"' in page
    refused = give(admin, "admin", holder="bob@example.org", reauth="wrong")
    assert refused.status_code == 400
    assert "not right" in refused.text
    assert bob not in state(app)["grants"]
    # The wrong answer is on record although nothing else of the request is.
    assert audit_events(app, "user.reauthentication")[-1]["outcome"] == "failure"
    assert give(admin, "admin", holder="bob@example.org", **REAUTH).status_code == 303
    assert state(app)["grants"][bob] == ["admin"]


def test_permissions_page(
    app: Flask,
    admin: FlaskClient,
    make_client: Callable[..., Any],  # noqa: F811 - the fixture imported above
) -> None:
    from identity.api.roles import client_by_id
    from identity.extensions import db
    from identity.rbac.service import declare_permission

    rp = make_client()
    with app.app_context():
        pk = client_by_id(db.session, rp.client_id).id
        declare_permission(db.session, pk, "invoices:approve", description="Approve invoices")
        db.session.commit()
    page = admin.get("/admin/permissions")
    assert page.status_code == 200
    assert "<code>users:read</code>" in page.text
    assert "See users and search them." in page.text
    assert "<code>invoices:approve</code>" in page.text
    assert "Approve invoices" in page.text
    # The role form offers what applications declare.
    assert 'value="invoices:approve"' in admin.get("/admin/roles/-/new").text


# Groups -------------------------------------------------------------------------------------


def test_groups_create_edit_and_members(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    bob = make_user("bob@example.org")
    assert admin.get("/admin/groups").status_code == 200
    assert "No group yet." in admin.get("/admin/groups").text
    assert submit(admin, "/admin/groups/-/new", name="staff").status_code == 303
    answer = submit(
        admin, "/admin/groups/-/new", name="finance", description="Money", parent="staff"
    )
    assert answer.status_code == 303
    assert answer.location.endswith("/admin/groups/finance")
    assert audit_events(app, "group.create")[-1]["data"]["group"] == "finance"
    assert submit(admin, "/admin/groups/-/new", name="finance").status_code == 409
    assert submit(admin, "/admin/groups/-/new", name="x", parent="nope").status_code == 400

    page = "/admin/groups/finance"
    added = submit(admin, page, f"{page}/members", email="bob@example.org")
    assert added.status_code == 303
    assert state(app)["groups"]["finance"][2] == ["bob@example.org"]
    assert audit_events(app, "group.member_add")[0]["subject_id"] == bob
    missing = submit(admin, page, f"{page}/members", email="nobody@example.org")
    assert missing.status_code == 400 and "no user with email" in missing.text

    listing = admin.get("/admin/groups").text
    assert '<a href="/admin/groups/staff">staff</a>' in listing
    shown = admin.get(page).text
    assert f'<a href="/admin/users/{bob}">bob@example.org</a>' in shown
    assert '<a href="/admin/groups/staff">staff</a>' in shown

    # Edit: staff cannot go inside finance (a loop); finance moves to the top; a stale
    # form changes nothing.
    staff = version(admin.get("/admin/groups/staff").text)
    loop = submit(
        admin, "/admin/groups/staff", "/admin/groups/staff/edit", version=staff, parent="finance"
    )
    assert loop.status_code == 400 and "groups cannot loop" in loop.text
    old = version(shown)
    edited = submit(admin, page, f"{page}/edit", version=old, description="Cash", parent="")
    assert edited.status_code == 303
    assert state(app)["groups"]["finance"][:2] == ("Cash", None)
    assert audit_events(app, "group.update")[-1]["data"]["clear_parent"] is True
    stale = submit(admin, page, f"{page}/edit", version=old, description="Lost", parent="staff")
    assert stale.status_code == 409
    assert "changed this group meanwhile" in stale.text
    assert 'value="Cash"' in stale.text
    assert state(app)["groups"]["finance"][:2] == ("Cash", None)

    removed = submit(admin, page, f"{page}/members/{bob}/delete")
    assert removed.status_code == 303
    assert state(app)["groups"]["finance"][2] == []
    assert audit_events(app, "group.member_remove")[0]["subject_id"] == bob


def test_group_roles(app: Flask, billing: FlaskClient) -> None:
    assert submit(billing, "/admin/groups/-/new", name="finance").status_code == 303
    page = "/admin/groups/finance"
    given = submit(billing, page, f"{page}/roles", role="billing-viewer")
    assert given.status_code == 303
    assert "billing-viewer" in billing.get(page).text
    assigned = audit_events(app, "role.assign")
    assert assigned[-1]["data"]["principal"] == "group"
    # The admin role asks for a fresh proof.
    refused = submit(billing, page, f"{page}/roles", role="admin", reauth="wrong")
    assert refused.status_code == 400
    assert len(audit_events(app, "role.assign")) == len(assigned)
    assert submit(billing, page, f"{page}/roles", role="admin", **REAUTH).status_code == 303
    shown = billing.get(page).text
    takes = re.findall(r'action="(/admin/groups/finance/roles/[^"]+/delete)"', shown)
    assert len(takes) == 2
    assert submit(billing, page, takes[0]).status_code == 303
    assert len(audit_events(app, "role.unassign")) == 1
    # An assignment of another page is not taken from here.
    other = takes[1].replace("finance", "staff")
    assert submit(billing, "/admin/groups/-/new", name="staff").status_code == 303
    assert submit(billing, page, other).status_code == 400


def test_AUTHZ_13_delete_group_asks_password_and_name(app: Flask, admin: FlaskClient) -> None:
    assert submit(admin, "/admin/groups/-/new", name="finance").status_code == 303
    page, action = "/admin/groups/finance", "/admin/groups/finance/delete"
    assert submit(admin, page, action, confirm="finance", reauth="nope").status_code == 400
    assert submit(admin, page, action, confirm="financ", **REAUTH).status_code == 400
    assert "finance" in state(app)["groups"]
    done = submit(admin, page, action, confirm="finance", **REAUTH)
    assert done.status_code == 303
    assert "finance" not in state(app)["groups"]
    assert audit_events(app, "group.delete")[0]["data"]["group"] == "finance"


def test_a_role_and_a_group_named_new_open_on_their_pages(admin: FlaskClient) -> None:
    # The forms that create them live under "-", which no name can be.
    created = submit(admin, "/admin/roles/-/new", name="new", more="invoices:read")
    assert created.status_code == 303 and created.location.endswith("/admin/roles/new")
    role = admin.get("/admin/roles/new")
    assert role.status_code == 200
    assert "<code>invoices:read</code>" in role.text
    assert 'action="/admin/roles/-/new"' not in role.text  # the role, not the form
    created = submit(admin, "/admin/groups/-/new", name="new", description="Newcomers")
    assert created.status_code == 303 and created.location.endswith("/admin/groups/new")
    group = admin.get("/admin/groups/new")
    assert group.status_code == 200
    assert "Newcomers" in group.text
    assert 'action="/admin/groups/-/new"' not in group.text
    assert submit(admin, "/admin/groups/-/new", name="-").status_code == 400


# The decision explorer ----------------------------------------------------------------------


def test_explorer_explains_and_what_if(app: Flask, billing: FlaskClient, make_user: Any) -> None:
    make_user("bob@example.org")
    assert give(billing, "billing-approver", holder="bob@example.org").status_code == 303
    empty = billing.get("/admin/explorer")
    assert empty.status_code == 200 and "Granted through" not in empty.text

    asked = billing.get("/admin/explorer?subject=bob@example.org&permission=invoices:read")
    assert asked.status_code == 200
    text = asked.text
    assert '<strong class="badge good">Allowed</strong>' in text
    path = text.split('<ol class="path"', 1)[1].split("</ol>", 1)[0]
    steps = re.findall(r'<span class="muted">(\w+)</span> <strong>([^<]+)</strong>', path)
    assert steps == [
        ("user", "bob@example.org"),
        ("role", "billing-approver"),
        ("role", "billing-viewer"),
        ("permission", "invoices:read"),
    ]

    what_if = billing.get(
        "/admin/explorer?subject=bob@example.org&permission=invoices:read&remove=billing-approver"
    ).text
    assert "The decision changes</strong>: allowed now, denied then." in what_if
    assert '<strong class="badge bad">Denied</strong>' in what_if
    assert "<dt>Loses</dt><dd><code>invoices:approve</code> <code>invoices:read</code>" in what_if
    assert state(app)["grants"]  # nothing changed: bob still holds it
    assert audit_events(app, "role.unassign") == []

    denied = billing.get("/admin/explorer?subject=bob@example.org&permission=keys:write").text
    assert '<strong class="badge bad">Denied</strong>' in denied
    assert "admin <span" in denied  # a role that would grant it
    gains = billing.get(
        "/admin/explorer?subject=bob@example.org&permission=keys:write&add=admin"
    ).text
    assert "allowed then" in gains and "<dt>Gains</dt><dd><code>*</code>" in gains


def test_explorer_client_subject_and_mistakes(
    app: Flask,
    admin: FlaskClient,
    make_client: Callable[..., Any],  # noqa: F811 - the fixture imported above
) -> None:
    rp = make_client()
    asked = admin.get(f"/admin/explorer?subject={rp.client_id}&permission=users:read")
    assert asked.status_code == 200
    assert "Denied" in asked.text
    bad = admin.get("/admin/explorer?subject=root@example.org&permission=Not+A+Permission")
    assert bad.status_code == 400
    assert "not a permission" in bad.text
    nobody = admin.get("/admin/explorer?subject=nobody@example.org&permission=users:read")
    assert nobody.status_code == 400 and "no user with email" in nobody.text
    no_client = admin.get("/admin/explorer?subject=root@example.org&permission=x:y&client=nope")
    assert no_client.status_code == 400 and "no client" in no_client.text


# Who may do what ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user-manager", "auditor"])
def test_roles_without_roles_write(
    app: Flask, operator: Any, admin: FlaskClient, role: str
) -> None:
    assert submit(admin, "/admin/roles/-/new", **BILLING).status_code == 303
    client = operator(role)
    page = client.get("/admin/roles/billing-viewer")
    assert page.status_code == 200
    assert 'href="/admin/roles/-/new"' not in client.get("/admin/roles").text
    assert "/admin/roles/billing-viewer/edit" not in page.text
    assert "/admin/roles/billing-viewer/delete" not in page.text
    assert client.get("/admin/roles/-/new").status_code == 403
    before = state(app)
    token = {"page": "/admin/roles/billing-viewer"}
    for action, data in (
        ("/admin/roles/-/new", {"name": "mine", "more": "invoices:read"}),
        ("/admin/roles/billing-viewer/edit", {"version": version(admin.get(token["page"]).text)}),
        ("/admin/roles/billing-viewer/delete", {"confirm": "billing-viewer", **REAUTH}),
    ):
        assert post(client, action, **data).status_code == 403
    assert state(app) == before


def test_AUTHZ_07_auditor_changes_nothing(app: Flask, operator: Any, billing: FlaskClient) -> None:
    assert submit(billing, "/admin/groups/-/new", name="finance").status_code == 303
    auditor = operator("auditor")
    for url in ("/admin/roles", "/admin/permissions", "/admin/groups", "/admin/explorer"):
        assert auditor.get(url).status_code == 200
    group = auditor.get("/admin/groups/finance").text
    role = auditor.get("/admin/roles/billing-viewer").text
    assert "/admin/groups/finance/members" not in group
    assert "/admin/groups/finance/roles" not in group
    assert "/admin/groups/finance/delete" not in group
    assert "/holders" not in role
    assert 'href="/admin/groups/-/new"' not in auditor.get("/admin/groups").text
    assert auditor.get("/admin/groups/-/new").status_code == 403
    before = state(app)
    page = "/admin/groups/finance"
    for action, data in (
        ("/admin/groups/-/new", {"name": "mine"}),
        (f"{page}/members", {"email": auditor.email}),  # type: ignore[attr-defined]
        (f"{page}/roles", {"role": "billing-viewer"}),
        (f"{page}/edit", {"description": "x"}),
        (f"{page}/delete", {"confirm": "finance", **REAUTH}),
        ("/admin/roles/billing-viewer/holders", {"holder": auditor.email}),  # type: ignore[attr-defined]
    ):
        assert post(auditor, action, **data).status_code == 403, action
    assert state(app) == before


def test_AUTHZ_05_user_manager_gives_only_what_it_holds(
    app: Flask, operator: Any, billing: FlaskClient, make_user: Any
) -> None:
    bob = make_user("bob@example.org")
    manager = operator("user-manager")
    assert "/admin/roles/auditor/holders" in manager.get("/admin/roles/auditor").text
    # It may give a role it holds all of, not one holding more (admin, or invoices).
    assert give(manager, "user-manager", holder="bob@example.org").status_code == 303
    refused = give(manager, "billing-viewer", holder="bob@example.org")
    assert refused.status_code == 403
    assert "you cannot grant what you do not hold: invoices:read" in refused.text
    assert state(app)["grants"][bob] == ["user-manager"]
    # Groups are its to change.
    assert submit(manager, "/admin/groups/-/new", name="desk").status_code == 303


def test_a_user_without_a_role_is_refused(operator: Any) -> None:
    plain = operator()
    for url in ("/admin/roles", "/admin/permissions", "/admin/groups", "/admin/explorer"):
        assert plain.get(url).status_code == 403


def test_WEB_01_posts_without_csrf_token_are_refused(app: Flask, billing: FlaskClient) -> None:
    before = state(app)
    for action, data in (
        ("/admin/roles/-/new", {"name": "mine"}),
        ("/admin/roles/billing-viewer/delete", {"confirm": "billing-viewer", **REAUTH}),
        ("/admin/groups/-/new", {"name": "finance"}),
    ):
        assert billing.post(action, data=data).status_code == 400
    assert state(app) == before


def test_long_lists_come_in_pages(app: Flask, admin: FlaskClient) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        auditor = rbac.role_by_name(db.session, "auditor")
        for n in range(52):
            group = rbac.create_group(db.session, f"team-{n:02d}")
            rbac.assign(db.session, auditor, rbac.Principal("group", group.id))
        db.session.commit()
    first = admin.get("/admin/groups").text
    assert "team-49" in first and "team-50" not in first
    following = re.search(r'href="(/admin/groups\?cursor=[^"]+)" rel="next"', first)
    assert following
    second = admin.get(following.group(1).replace("&amp;", "&")).text
    assert "team-50" in second and "team-51" in second and "team-49" not in second
    holders = admin.get("/admin/roles/auditor").text
    more = re.search(r'href="(/admin/roles/auditor\?cursor=[^"]+)" rel="next"', holders)
    assert more and holders.count("<td>group</td>") == 50
    assert admin.get(more.group(1)).text.count("<td>group</td>") == 2
    assert admin.get("/admin/roles/auditor?cursor=nonsense").status_code == 400
    assert admin.get("/admin/groups?cursor=nonsense").status_code == 400


def test_a_group_change_without_the_parent_field_keeps_the_parent(
    app: Flask, admin: FlaskClient
) -> None:
    assert submit(admin, "/admin/groups/-/new", name="outer").status_code == 303
    assert submit(admin, "/admin/groups/-/new", name="inner", parent="outer").status_code == 303
    page = admin.get("/admin/groups/inner").text
    answer = admin.post(
        "/admin/groups/inner/edit",
        data={"csrf_token": csrf_token(page), "version": version(page), "description": "x"},
    )
    assert answer.status_code == 303
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        group = rbac.group_by_name(db.session, "inner")
        assert group.description == "x"
        assert group.parent_id == rbac.group_by_name(db.session, "outer").id
