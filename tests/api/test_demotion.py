"""Taking a role away takes effect at the next request, whatever tokens the holder has."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.api.conftest import Api


def test_AUTHZ_06_a_demoted_admin_is_refused_at_once(
    app: Flask, service_account: Any, make_user: Any
) -> None:
    """The token still carries identity:admin, but the API decides on the subject's roles
    now: once the admin role is taken back (through the API), the next call is a 403."""
    make_user("root@example.org", roles=("admin",))  # another admin remains (AUTHZ-08)
    ops: Api = service_account("admin", name="ops")
    boss: Api = service_account("admin", name="boss")
    assert ops.get("/users").status_code == 200
    listed = boss.get("/assignments", query_string={"role": "admin"}).json["items"]
    (theirs,) = [a for a in listed if a["client_id"] and a["client_id"] != _client_of(boss)]
    assert boss.delete(f"/assignments/{theirs['id']}").status_code == 204
    refused = ops.get("/users")
    assert refused.status_code == 403
    assert refused.json["missing"] == "users:read"


def _client_of(api: Api) -> str:
    import base64
    import json

    payload = api.token.split(".")[1] if api.token else ""
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["client_id"])
