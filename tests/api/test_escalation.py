"""Privilege escalation through the admin API, each path a review found (AUTHZ-02,
AUTHZ-05): taking away needs what is taken, a client's secret or redirect URIs are as
powerful as its service account, and trust (first-party, identity:admin) needs `*`."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.api.conftest import Api, client_pk, give_roles


def _role_holder(app: Flask, name: str, *permissions: str) -> None:
    from identity.extensions import db
    from identity.rbac import service as rbac

    with app.app_context():
        rbac.create_role(db.session, name, permissions=list(permissions))
        db.session.commit()


def test_AUTHZ_02_clients_write_cannot_take_over_an_admin_service_account(
    app: Flask, service_account: Any, make_client: Any
) -> None:
    """Rotating the secret of (or redirecting, or deleting) a client whose service account
    holds more than the caller is refused: the new secret would be an admin's."""
    _role_holder(app, "client-admin", "clients:*")
    caller: Api = service_account("client-admin", name="caller")
    robot = make_client("robot", grant_types=["client_credentials"], redirect_uris=[], scope="")
    give_roles(app, "client", client_pk(app, robot.client_id), "admin")

    rotated = caller.post(f"/clients/{robot.client_id}/secret")
    assert rotated.status_code == 403, rotated.json
    assert "client_secret" not in (rotated.json or {})
    etag = caller.get(f"/clients/{robot.client_id}").headers["ETag"]
    renamed = caller.patch(
        f"/clients/{robot.client_id}", json={"name": "mine"}, headers={"If-Match": etag}
    )
    assert renamed.status_code == 403
    assert caller.delete(f"/clients/{robot.client_id}").status_code == 403
    # A client holding nothing more than the caller is theirs to manage.
    plain = make_client("plain", grant_types=["client_credentials"], redirect_uris=[], scope="")
    assert caller.post(f"/clients/{plain.client_id}/secret").status_code == 200


def test_AUTHZ_05_trusted_clients_need_everything(app: Flask, service_account: Any) -> None:
    """A first-party client skips consent; one registered for identity:admin carries an
    administrator's power to its redirect URIs: only a holder of * registers either."""
    _role_holder(app, "client-admin", "clients:*")
    caller: Api = service_account("client-admin", name="caller")
    base = {"name": "evil", "redirect_uris": ["https://evil.example/cb"]}
    assert caller.post("/clients", json={**base, "first_party": True}).status_code == 403
    admin_scope = {**base, "scope": "openid identity:admin"}
    assert caller.post("/clients", json=admin_scope).status_code == 403
    assert caller.post("/clients", json=base).status_code == 201
    boss: Api = service_account("admin", name="boss")
    assert boss.post("/clients", json={**admin_scope, "first_party": True}).status_code == 201


def test_AUTHZ_05_taking_away_needs_what_is_taken(
    app: Flask, service_account: Any, make_user: Any
) -> None:
    """A user manager cannot take an admin out of the group that makes them one, delete
    that group, move it, or end an admin's sessions; it can do so for a plain group."""
    from identity.extensions import db
    from identity.rbac import service as rbac

    make_user("root@example.org", roles=("admin",))
    second = make_user("second@example.org")
    plain = make_user("plain@example.org")
    with app.app_context():
        ops = rbac.create_group(db.session, "ops")
        rbac.create_group(db.session, "top")
        rbac.create_group(db.session, "ops-sub", parent="ops")
        team = rbac.create_group(db.session, "team")
        rbac.assign(
            db.session, rbac.role_by_name(db.session, "admin"), rbac.Principal("group", ops.id)
        )
        rbac.add_member(db.session, ops, db.session.get(rbac.User, second))
        rbac.add_member(db.session, team, db.session.get(rbac.User, plain))
        db.session.commit()
    manager: Api = service_account("user-manager", name="manager")

    assert manager.delete(f"/groups/ops/members/{second}").status_code == 403
    assert manager.delete("/groups/ops").status_code == 403
    # Taking a subgroup out of ops takes admin from its members.
    etag = manager.get("/groups/ops-sub").headers["ETag"]
    moved = manager.patch("/groups/ops-sub", json={"parent": ""}, headers={"If-Match": etag})
    assert moved.status_code == 403
    etag = manager.get("/groups/team").headers["ETag"]
    nested = manager.patch("/groups/team", json={"parent": "top"}, headers={"If-Match": etag})
    assert nested.status_code == 200  # top gives nothing: nothing is given or taken
    assert manager.delete(f"/users/{second}/sessions").status_code == 403
    assert manager.delete(f"/groups/team/members/{plain}").status_code == 204
    assert manager.delete("/groups/team").status_code == 204


def test_taking_a_role_back_needs_to_outrank_its_holder(
    app: Flask, service_account: Any, make_user: Any, make_client: Any
) -> None:
    """A user manager may give and take a role it holds everything of, but not take it from
    a user or service account that holds more than the manager (an administrator)."""
    _role_holder(app, "helper", "users:read")
    boss_api: Api = service_account("admin", name="boss")
    make_user("root@example.org", roles=("admin",))
    boss = make_user("boss@example.org", roles=("admin",))
    plain = make_user("plain@example.org")
    robot = make_client("robot", grant_types=["client_credentials"], redirect_uris=[], scope="")
    give_roles(app, "client", client_pk(app, robot.client_id), "admin")
    manager: Api = service_account("user-manager", name="manager")

    def given(**holder: str) -> str:
        answer = boss_api.post("/assignments", json={"role": "helper", **holder})
        assert answer.status_code == 201, answer.json
        return str(answer.json["id"])

    for assignment in (given(user_id=str(boss)), given(client_id=robot.client_id)):
        refused = manager.delete(f"/assignments/{assignment}")
        assert refused.status_code == 403, refused.json
        assert "holds permissions you do not hold" in refused.json["detail"]
    held = boss_api.get("/assignments", query_string={"role": "helper"}).json["items"]
    assert len(held) == 2
    assert manager.delete(f"/assignments/{given(user_id=str(plain))}").status_code == 204


def test_AUTHZ_05_taking_permissions_out_of_a_role_needs_them(
    app: Flask, service_account: Any
) -> None:
    _role_holder(app, "role-admin", "roles:*")
    _role_holder(app, "keyholder", "keys:write")
    caller: Api = service_account("role-admin", name="caller")
    etag = caller.get("/roles/keyholder").headers["ETag"]
    shrunk = caller.patch("/roles/keyholder", json={"permissions": []}, headers={"If-Match": etag})
    assert shrunk.status_code == 403
    assert "keys:write" in shrunk.json["detail"]


def test_a_new_client_is_known_to_the_decision_api_at_once(admin_api: Api) -> None:
    created = admin_api.post(
        "/clients", json={"name": "svc", "grant_types": ["client_credentials"], "scope": ""}
    )
    assert created.status_code == 201
    check = {"subject": {"client_id": created.json["client_id"]}, "permission": "users:read"}
    answer = admin_api.post("/authz/check", json=check)
    assert answer.status_code == 200, answer.json
    assert answer.json["allowed"] is False


def test_bad_inputs_are_4xx_not_500(admin_api: Api) -> None:
    import base64

    huge = base64.urlsafe_b64encode(b'["999999999999999999999999999999"]').decode().rstrip("=")
    assert admin_api.get("/audit-events", query_string={"cursor": huge}).status_code == 400
    nul = admin_api.post("/roles", json={"name": "nul", "description": "a\u0000b"})
    assert nul.status_code == 400
    assert nul.mimetype == "application/problem+json"
