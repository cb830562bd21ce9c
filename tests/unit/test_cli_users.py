"""`identity users disable` and `delete` obey the rule the admin API does: the last active
administrator stays (AUTHZ-08). `identity invites create` acts as the operator at the
command, who may give any role."""

# ruff: noqa: F811 - the imported fixture is a test argument
from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from tests.unit.test_cli_commands import cli  # noqa: F401 - fixture


def state(app: Flask, email: str) -> str:
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None:
            return "gone"
        return "active" if user.is_active else "disabled"


def test_AUTHZ_08_the_commands_keep_the_last_active_admin(
    app: Flask, make_user: Any, cli: Any
) -> None:
    make_user("root@example.org", roles=("admin",))
    make_user("alice@example.org")
    for args in (("disable", "root@example.org"), ("delete", "root@example.org", "--yes")):
        refused = cli("users", *args, ok=False)
        assert refused.exit_code == 1
        assert refused.output == "Error: that would leave no active administrator\n"
        assert state(app, "root@example.org") == "active"
    # Anyone else, as before; and the admin once another one is active.
    cli("users", "disable", "alice@example.org")
    make_user("second@example.org", roles=("admin",))
    cli("users", "disable", "root@example.org")
    assert state(app, "root@example.org") == "disabled"
    refused = cli("users", "delete", "second@example.org", "--yes", ok=False)
    assert "no active administrator" in refused.output
    cli("users", "enable", "root@example.org")
    cli("users", "delete", "second@example.org", "--yes")
    assert state(app, "second@example.org") == "gone"


def test_invites_create_gives_any_role_as_the_operator(
    app: Flask, make_user: Any, cli: Any
) -> None:
    """`identity invites create --role` acts as the operator running it, who may give any
    role (the console's and API's callers only roles they hold); an unknown role is an
    error line."""
    from identity.extensions import db
    from identity.models.user import Invitation
    from tests.functional.conftest import audit_events

    make_user("root@example.org", roles=("admin",))
    result = cli("invites", "create", "--email", "new@example.org", "--role", "admin")
    assert "/register?invite=" in result.stdout
    with app.app_context():
        (invitation,) = db.session.execute(select(Invitation)).scalars()
        assert invitation.role.name == "admin" and invitation.created_by_id is None
    assert audit_events(app, "invitation.create")[-1]["actor_id"] is None
    unknown = cli("invites", "create", "--role", "superuser", ok=False)
    assert unknown.exit_code == 1 and "unknown role" in unknown.output
