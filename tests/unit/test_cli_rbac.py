"""`identity roles`, `groups`, `permissions` and `authz check` in-process, against the test
database: the operator's side of RBAC goes through identity.rbac.service, so its rules hold
here too (no inheritance loop, no group loop, built-in roles kept, an administrator always
remains), each refusal is one line, and `authz check` answers with its exit status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

ADMIN = "admin@example.org"
BOB = "bob@example.org"


@pytest.fixture
def cli(app: Any, monkeypatch: pytest.MonkeyPatch, make_user: Any) -> Any:
    """Run `identity ...` in-process against the test app's database, which holds the
    built-in roles and one active administrator (as after `identity init`) and Bob."""
    from identity.cli import (  # noqa: F401 - registers
        authz_commands,
        groups_commands,
        oauth_commands,
        roles_commands,
        users,
    )
    from identity.cli import cli as command
    from identity.extensions import db
    from identity.rbac.service import ensure_builtin_roles

    with app.app_context():
        ensure_builtin_roles(db.session)
        db.session.commit()
    make_user(ADMIN, roles=("admin",))
    make_user(BOB)
    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())

    def run(*args: str, code: int = 0, input: str | None = None) -> Any:
        result = CliRunner().invoke(command, list(args), input=input)
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert "Traceback" not in result.output
        return result

    return run


def error(result: Any) -> str:
    """The one-line message of a refused command."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0].removeprefix("Error: ")


def client_id(cli: Any) -> str:
    created = cli(
        "clients", "create", "--name", "Shop", "--redirect-uri", "https://shop.test/cb", "--json"
    )
    return str(json.loads(created.stdout)["client_id"])


def test_a_role_is_created_with_permissions_and_a_parent(cli):
    """`roles create` stores permissions and parents; show, list and --json agree."""
    assert cli("roles", "create", "viewer", "--permission", "articles:read").stdout == (
        "created role viewer\n"
    )
    created = cli(
        "roles",
        "create",
        "editor",
        "--description",
        "Edits articles",
        "--permission",
        "articles:edit",
        "--permission",
        "articles:publish",
        "--parent",
        "viewer",
        "--json",
    )
    row = json.loads(created.stdout)
    assert set(row) == {"id", "name", "description", "builtin", "permissions", "parents", "holders"}
    assert row["name"] == "editor" and row["description"] == "Edits articles"
    assert row["permissions"] == ["articles:edit", "articles:publish"]
    assert row["parents"] == ["viewer"] and row["builtin"] is False
    assert row["holders"] == {"users": [], "groups": [], "clients": []}

    listed = {r["name"]: r for r in json.loads(cli("roles", "list", "--json").stdout)}
    assert {"admin", "auditor", "user-manager", "viewer", "editor"} <= set(listed)
    assert listed["admin"]["builtin"] is True and listed["admin"]["permissions"] == ["*"]
    assert listed["editor"] == {k: v for k, v in row.items() if k != "holders"}
    assert "editor  custom  articles:edit,articles:publish  inherits viewer  Edits articles" in (
        cli("roles", "list").stdout
    )
    shown = cli("roles", "show", "editor").stdout
    assert "parents:     viewer\n" in shown and "built-in:    no\n" in shown

    refused = cli("roles", "create", "viewer", code=1)
    assert error(refused) == "a role named 'viewer' exists"
    refused = cli("roles", "create", "x", "--permission", "Not A Permission", code=1)
    assert "not a permission a role can hold" in error(refused)
    assert error(cli("roles", "create", "x", "--parent", "nobody", code=1)) == (
        "no role named 'nobody'"
    )


def test_an_inheritance_cycle_is_refused_with_a_clear_message(cli):
    """A role cannot inherit a role that inherits it, nor itself; nothing changes."""
    cli("roles", "create", "viewer", "--permission", "articles:read")
    cli("roles", "create", "editor", "--parent", "viewer")
    refused = cli("roles", "update", "viewer", "--parent", "editor", code=1)
    assert error(refused) == (
        "role viewer cannot inherit editor: editor already inherits viewer"
        " (role inheritance cannot loop)"
    )
    refused = cli("roles", "update", "viewer", "--parent", "viewer", code=1)
    assert error(refused) == "role viewer cannot inherit itself"
    assert json.loads(cli("roles", "show", "viewer", "--json").stdout)["parents"] == []

    updated = cli("roles", "update", "editor", "--clear-parents", "--description", "Edits")
    assert updated.stdout == "updated role editor: description, parents\n"
    assert cli("roles", "update", "editor").stdout == "nothing changed\n"
    both = cli("roles", "update", "editor", "--permission", "a:b", "--clear-permissions", code=2)
    assert "not both" in both.output
    assert error(cli("roles", "update", "nobody", code=1)) == "no role named 'nobody'"


def test_a_builtin_role_cannot_be_deleted_or_changed(cli):
    """admin, user-manager and auditor keep their permissions; deleting one is refused
    without asking first."""
    refused = cli("roles", "delete", "admin", code=1)
    assert error(refused) == "admin is built in and cannot be deleted"
    assert "[y/N]" not in refused.output
    refused = cli("roles", "update", "auditor", "--permission", "users:write", code=1)
    assert error(refused) == "auditor is built in: its permissions are identity's own"
    assert "auditor" in [r["name"] for r in json.loads(cli("roles", "list", "--json").stdout)]


def test_deleting_a_role_asks_and_takes_its_assignments(cli):
    cli("roles", "create", "viewer", "--permission", "articles:read")
    cli("roles", "assign", "viewer", "--user", BOB)
    declined = cli("roles", "delete", "viewer", input="n\n", code=1)
    assert "Delete role viewer and its 1 assignment?" in declined.output
    assert "Aborted!" in declined.output
    assert cli("roles", "delete", "viewer", input="y\n").stdout.endswith("deleted role viewer\n")
    assert error(cli("roles", "show", "viewer", code=1)) == "no role named 'viewer'"
    denied = cli("authz", "check", BOB, "articles:read", code=1)
    assert denied.stdout == "denied\n"


def test_groups_nest_and_a_loop_is_refused(cli):
    """A group inside a group; moving the outer one inside the inner one is refused."""
    assert cli("groups", "create", "staff", "--description", "Everyone").stdout == (
        "created group staff\n"
    )
    assert cli("groups", "create", "editors", "--parent", "staff").stdout == (
        "created group editors inside staff\n"
    )
    cli("groups", "create", "night-shift", "--parent", "editors")
    refused = cli("groups", "update", "staff", "--parent", "night-shift", code=1)
    assert error(refused) == (
        "group staff cannot be inside night-shift: night-shift is staff or inside it"
        " (groups cannot loop)"
    )
    assert "groups cannot loop" in error(
        cli("groups", "update", "staff", "--parent", "staff", code=1)
    )

    listed = json.loads(cli("groups", "list", "--json").stdout)
    assert [(g["name"], g["parent"]) for g in listed] == [
        ("editors", "staff"),
        ("night-shift", "editors"),
        ("staff", None),
    ]
    assert set(listed[0]) == {"id", "name", "description", "parent"}
    assert "night-shift  inside editors  -" in cli("groups", "list").stdout

    assert cli("groups", "update", "night-shift", "--no-parent").stdout == (
        "updated group night-shift: parent\n"
    )
    assert json.loads(cli("groups", "show", "night-shift", "--json").stdout)["parent"] is None
    both = cli("groups", "update", "staff", "--parent", "editors", "--no-parent", code=2)
    assert "not both" in both.output

    declined = cli("groups", "delete", "staff", input="n\n", code=1)
    assert "Delete group staff and the groups inside it (editors)?" in declined.output
    cli("groups", "delete", "staff", "--yes")
    assert [g["name"] for g in json.loads(cli("groups", "list", "--json").stdout)] == [
        "night-shift"
    ]


def test_a_group_members_check_explains_the_group_and_role_path(cli):
    """Roles given to a user and to a group; the decision for a member of a subgroup names
    each hop, and `groups show` and `roles show` list who holds what."""
    cli("roles", "create", "viewer", "--permission", "articles:read")
    cli("roles", "create", "editor", "--permission", "articles:edit", "--parent", "viewer")
    cli("groups", "create", "staff")
    cli("groups", "create", "editors", "--parent", "staff")
    assert cli("groups", "add-member", "editors", "Bob@Example.org").stdout == (
        f"added {BOB} to editors\n"
    )
    assert error(cli("groups", "add-member", "editors", BOB, code=1)) == (
        f"{BOB} is already in editors"
    )
    assert cli("roles", "assign", "editor", "--group", "staff").stdout == (
        "gave role editor to group staff\n"
    )
    assert cli("roles", "assign", "viewer", "--user", BOB).stdout == (
        f"gave role viewer to user {BOB}\n"
    )
    assert error(cli("roles", "assign", "viewer", "--user", BOB, code=1)) == (
        f"user {BOB} already has the role viewer"
    )

    allowed = cli("authz", "check", BOB, "articles:edit", "--explain")
    assert allowed.stdout == (
        "allowed\n"
        f"reason: user {BOB} -> group editors -> group staff -> role editor"
        " -> permission articles:edit\n"
        "path:\n"
        f"  user {BOB}\n"
        "  group editors\n"
        "  group staff\n"
        "  role editor\n"
        "  permission articles:edit\n"
    )
    # The shortest path wins: Bob holds viewer himself.
    direct = cli("authz", "check", BOB, "articles:read", "--explain").stdout
    assert f"reason: user {BOB} -> role viewer -> permission articles:read\n" in direct
    assert cli("authz", "check", BOB, "articles:edit").stdout == "allowed\n"

    group = json.loads(cli("groups", "show", "editors", "--json").stdout)
    assert group["parent"] == "staff" and group["members"] == [BOB]
    assert group["roles"] == []
    assert group["inherited_roles"] == [{"role": "editor", "scope": None, "group": "staff"}]
    staff = json.loads(cli("groups", "show", "staff", "--json").stdout)
    assert staff["subgroups"] == ["editors"]
    assert staff["roles"] == [{"role": "editor", "scope": None}]
    assert "inherited:   editor (from staff)\n" in cli("groups", "show", "editors").stdout

    holders = json.loads(cli("roles", "show", "viewer", "--json").stdout)["holders"]
    assert holders == {"users": [{"email": BOB, "scope": None}], "groups": [], "clients": []}
    assert "groups:      staff\n" in cli("roles", "show", "editor").stdout

    assert cli("groups", "remove-member", "editors", BOB).stdout == f"removed {BOB} from editors\n"
    assert error(cli("groups", "remove-member", "editors", BOB, code=1)) == (
        f"{BOB} is not in editors"
    )
    cli("authz", "check", BOB, "articles:edit", code=1)
    assert cli("roles", "unassign", "viewer", "--user", BOB).stdout == (
        f"took role viewer from user {BOB}\n"
    )
    assert error(cli("roles", "unassign", "viewer", "--user", BOB, code=1)) == (
        f"user {BOB} does not have the role viewer"
    )


def test_a_denied_check_exits_1_and_names_a_candidate_role(cli):
    """Denied is exit 1 with the roles that would grant it; an error is exit 2, so that a
    script never reads a mistake as a decision."""
    cli("roles", "create", "publisher", "--permission", "articles:publish")
    denied = cli("authz", "check", BOB, "articles:publish", "--explain", code=1)
    assert denied.stdout == (
        "denied\n"
        "reason: no role of the subject grants articles:publish; it is in:"
        " publisher (holds articles:publish), admin (holds *)\n"
        "candidates:\n"
        "  publisher (holds articles:publish)\n"
        "  admin (holds *)\n"
    )
    assert cli("authz", "check", BOB, "articles:publish", code=1).stdout == "denied\n"

    assert error(cli("authz", "check", "nobody@example.org", "a:b", code=2)) == (
        "no user with email nobody@example.org"
    )
    assert error(cli("authz", "check", "no-such-client", "a:b", code=2)) == (
        "no client no-such-client (name a user by their email address)"
    )
    assert "not a permission" in error(cli("authz", "check", BOB, "Publish", code=2))
    assert error(cli("authz", "check", BOB, "a:b", "--client", "nope", code=2)) == "no client nope"


def test_the_json_shapes(cli):
    """`authz check --json` prints what POST /api/v1/authz/check returns, with the same
    exit status as the plain answer."""
    cli("roles", "create", "viewer", "--permission", "articles:read")
    cli("roles", "assign", "viewer", "--user", BOB)
    allowed = json.loads(cli("authz", "check", BOB, "articles:read", "--json").stdout)
    assert allowed == {
        "allowed": True,
        "permission": "articles:read",
        "explanation": {
            "reason": f"user {BOB} -> role viewer -> permission articles:read",
            "path": [
                {"type": "user", "name": BOB},
                {"type": "role", "name": "viewer"},
                {"type": "permission", "name": "articles:read"},
            ],
        },
    }
    denied = json.loads(cli("authz", "check", BOB, "articles:edit", "--json", code=1).stdout)
    assert denied["allowed"] is False and denied["permission"] == "articles:edit"
    assert set(denied["explanation"]) == {"reason", "missing", "candidates"}
    assert denied["explanation"]["missing"] == "articles:edit"
    assert denied["explanation"]["candidates"] == [{"role": "admin", "grants": "*"}]

    assert cli("groups", "show", "staff", "--json", code=1).stdout == ""  # an error, no JSON
    cli("groups", "create", "staff")
    group = json.loads(cli("groups", "show", "staff", "--json").stdout)
    assert set(group) == {
        "id",
        "name",
        "description",
        "parent",
        "members",
        "subgroups",
        "roles",
        "inherited_roles",
    }


def test_unassigning_the_last_admin_is_refused(cli, app):
    """The only active administrator keeps the admin role; the refusal is one line."""
    refused = cli("roles", "unassign", "admin", "--user", ADMIN, code=1)
    assert error(refused) == "that would leave no active administrator"
    assert cli("authz", "check", ADMIN, "roles:write").stdout == "allowed\n"
    usage = cli("roles", "unassign", "admin", code=2)
    assert "give exactly one of --user, --group and --client" in usage.output
    usage = cli("roles", "assign", "admin", "--user", ADMIN, "--group", "x", code=2)
    assert "give exactly one of --user, --group and --client" in usage.output

    # With a second administrator, the first may lose the role; the change is audited.
    cli("roles", "assign", "admin", "--user", BOB)
    cli("roles", "unassign", "admin", "--user", ADMIN)
    cli("authz", "check", ADMIN, "roles:write", code=1)
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        events = (
            db.session.execute(select(AuditEvent.event).order_by(AuditEvent.seq)).scalars().all()
        )
    assert events[-2:] == ["role.assign", "role.unassign"]


def test_client_roles_and_scopes(cli):
    """A client's service account holds roles; a role given within one client counts only
    for checks about that client."""
    shop = client_id(cli)
    cli("roles", "create", "buyer", "--permission", "orders:create")
    assert cli("roles", "assign", "buyer", "--user", BOB, "--scope", shop).stdout == (
        f"gave role buyer to user {BOB} within client {shop}\n"
    )
    cli("authz", "check", BOB, "orders:create", code=1)
    scoped = cli("authz", "check", BOB, "orders:create", "--client", shop, "--explain").stdout
    assert f"  role buyer within client {shop}\n" in scoped
    scoped_json = json.loads(
        cli("authz", "check", BOB, "orders:create", "--client", shop, "--json").stdout
    )
    assert scoped_json["explanation"]["path"][1]["type"] == "role"
    assert "scope" in scoped_json["explanation"]["path"][1]

    cli("roles", "assign", "buyer", "--client", shop)
    assert cli("authz", "check", shop, "orders:create").stdout == "allowed\n"
    holders = json.loads(cli("roles", "show", "buyer", "--json").stdout)["holders"]
    assert holders["users"] == [{"email": BOB, "scope": shop}]
    assert holders["clients"] == [{"client_id": shop, "scope": None}]

    assert error(cli("roles", "unassign", "buyer", "--user", BOB, code=1)) == (
        f"user {BOB} does not have the role buyer"
    )
    cli("roles", "unassign", "buyer", "--user", BOB, "--scope", shop)
    cli("authz", "check", BOB, "orders:create", "--client", shop, code=1)


def test_permissions_are_declared_listed_and_removed(cli):
    """identity's own permissions come from the code; an application's are declared."""
    own = json.loads(cli("permissions", "list", "--json").stdout)
    assert {"name": "users:read", "description": "See users and search them.",
            "client_id": None, "in_token": False} in own  # fmt: skip
    assert "authz:check  Ask the decision API" in cli("permissions", "list").stdout

    shop = client_id(cli)
    declared = cli(
        "permissions",
        "declare",
        shop,
        "invoices:approve",
        "--description",
        "Approve invoices",
        "--in-token",
    )
    assert declared.stdout == f"declared invoices:approve for client {shop} (in tokens)\n"
    cli("permissions", "declare", shop, "invoices:read")
    listed = json.loads(cli("permissions", "list", "--client", shop, "--json").stdout)
    assert listed == [
        {
            "name": "invoices:approve",
            "description": "Approve invoices",
            "client_id": shop,
            "in_token": True,
        },
        {"name": "invoices:read", "description": "", "client_id": shop, "in_token": False},
    ]
    assert cli("permissions", "list", "--client", shop).stdout == (
        "invoices:approve  in token  Approve invoices\ninvoices:read  -\n"
    )
    # Declaring again replaces the description and the flag.
    cli("permissions", "declare", shop, "invoices:approve")
    assert cli("permissions", "list", "--client", shop).stdout.startswith("invoices:approve  -\n")

    assert cli("permissions", "remove", shop, "invoices:read").stdout == (
        f"removed invoices:read from client {shop}\n"
    )
    refused = cli("permissions", "remove", shop, "invoices:read", code=1)
    assert error(refused) == "the client declares no permission 'invoices:read'"
    assert "not a permission name" in error(cli("permissions", "declare", shop, "Approve", code=1))
    assert error(cli("permissions", "list", "--client", "nope", code=1)) == "no client nope"
    assert error(cli("permissions", "declare", "nope", "a:b", code=1)) == "no client nope"


def test_a_client_id_may_start_with_a_dash(cli, app):
    """One generated client_id in 32 starts with '-': it is still read as the argument it
    is, in its place before the permission name, and as an option's value."""
    from sqlalchemy import update

    from identity.extensions import db
    from identity.models.oauth import Client

    # "-x", not "-" and the id's next character: that may be "-" too, making "--", the
    # end-of-options marker, which no client_id can be read as (1 id in 64 would).
    dashed = "-x" + client_id(cli)[2:]
    with app.app_context():
        db.session.execute(update(Client).values(client_id=dashed))
        db.session.commit()
    cli("permissions", "declare", dashed, "invoices:approve", "--in-token")
    cli("permissions", "declare", "--description", "Read", dashed, "invoices:read")
    listed = json.loads(cli("permissions", "list", "--client", dashed, "--json").stdout)
    assert [(p["name"], p["description"], p["in_token"]) for p in listed] == [
        ("invoices:approve", "", True),
        ("invoices:read", "Read", False),
    ]
    cli("permissions", "remove", dashed, "invoices:read")
    cli("permissions", "remove", "--", dashed, "invoices:approve")
    assert cli("permissions", "list", "--client", dashed).stdout == ""

    cli("roles", "create", "buyer", "--permission", "orders:create")
    cli("roles", "assign", "buyer", "--client", dashed, "--scope", dashed)
    assert cli("authz", "check", dashed, "orders:create", "--client", dashed).stdout == (
        "allowed\n"
    )
    assert cli("authz", "check", "--json", dashed, "orders:create", code=1).stdout.startswith("{")
    misspelt = cli("authz", "check", dashed, "orders:create", "--explian", code=2)
    assert "No such option" in misspelt.output
