"""The admin API's signing keys: their states, rotation and retirement, with the rules
`identity keys` follows; never key material."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.api.conftest import Api
from tests.oauth.conftest import fast_keys, public_jwks  # noqa: F401 - fast_keys: a fixture

pytestmark = pytest.mark.usefixtures("fast_keys")

PROBLEM = "application/problem+json"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
OPERATIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/keys", None),
    ("POST", "/keys/rotate", {}),
    ("POST", "/keys/KID/retire", {}),
]


def key_list(api: Api) -> list[dict[str, Any]]:
    response = api.get("/keys")
    assert response.status_code == 200, response.json
    return response.json["items"]  # type: ignore[no-any-return]


def by_alg(api: Api, alg: str, status: str = "active") -> dict[str, Any]:
    (row,) = [k for k in key_list(api) if k["alg"] == alg and k["status"] == status]
    return row


def published_kids(app: Flask) -> list[str]:
    app.extensions["identity"].keys.invalidate()  # what each worker's reload does
    return [k["kid"] for k in public_jwks(app.test_client())["keys"]]


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.mimetype == PROBLEM
    return response.json  # type: ignore[no-any-return]


def audited(app: Flask, event: str) -> list[Any]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.seq)
        rows = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return rows


def test_CRYPTO_04_keys_are_listed_with_their_state_never_their_material(admin_api: Api) -> None:
    """Each key's kid, algorithm, state and moments; no private (or public) key member."""
    response = admin_api.get("/keys")
    assert response.status_code == 200
    rows = response.json["items"]
    assert sorted(r["alg"] for r in rows) == ["ES256", "RS256"]
    assert {r["status"] for r in rows} == {"active"}
    for row in rows:
        assert set(row) == {
            "kid",
            "alg",
            "status",
            "created_at",
            "active_from",
            "retired_at",
            "unpublish_at",
        }
        assert not PRIVATE_MEMBERS & set(row)
    assert "private" not in response.get_data(as_text=True).lower()


def test_rotate_one_algorithm(app: Flask, admin_api: Api) -> None:
    """The new key is published and signs (no publish-ahead delay here); the key it
    replaces is retired but stays published until its tokens expire. Audited."""
    old = by_alg(admin_api, "ES256")
    rs = by_alg(admin_api, "RS256")
    response = admin_api.post("/keys/rotate", json={"alg": "ES256"})
    assert response.status_code == 201, response.json
    (new,) = response.json["items"]
    assert new["alg"] == "ES256" and new["status"] == "active" and new["kid"] != old["kid"]
    states = {k["kid"]: k for k in key_list(admin_api)}
    assert states[old["kid"]]["status"] == "retired"
    assert states[old["kid"]]["unpublish_at"] is not None
    assert states[rs["kid"]]["status"] == "active"  # the other algorithm is untouched
    assert {new["kid"], old["kid"], rs["kid"]} <= set(published_kids(app))
    event = audited(app, "key.rotate")[-1]
    assert event.data["kid"] == new["kid"] and event.data["replaces"] == [old["kid"]]


def test_rotate_every_algorithm_in_use(admin_api: Api) -> None:
    response = admin_api.post("/keys/rotate", json={})
    assert response.status_code == 201, response.json
    assert sorted(k["alg"] for k in response.json["items"]) == ["ES256", "RS256"]
    statuses = sorted(k["status"] for k in key_list(admin_api))
    assert statuses == ["active", "active", "retired", "retired"]


def test_retire_now_unpublishes_a_compromised_key(app: Flask, admin_api: Api) -> None:
    """After a rotation the old key can be retired at once: it leaves the JWKS."""
    old = by_alg(admin_api, "ES256")
    admin_api.post("/keys/rotate", json={"alg": "ES256"})
    response = admin_api.post(f"/keys/{old['kid']}/retire", json={"immediately": True})
    assert response.status_code == 200, response.json
    assert response.json["kid"] == old["kid"] and response.json["status"] == "unpublished"
    assert old["kid"] not in published_kids(app)
    event = audited(app, "key.retire")[-1]
    assert event.data["kid"] == old["kid"] and event.data["immediately"] is True


def test_retire_keeps_the_key_published_until_its_tokens_expire(app: Flask, admin_api: Api) -> None:
    old = by_alg(admin_api, "ES256")
    admin_api.post("/keys/rotate", json={"alg": "ES256"})
    response = admin_api.post(f"/keys/{old['kid']}/retire", json={})
    assert response.status_code == 200, response.json
    assert response.json["status"] == "retired" and response.json["unpublish_at"]
    assert old["kid"] in published_kids(app)


def test_the_only_key_of_an_algorithm_cannot_be_retired(app: Flask, admin_api: Api) -> None:
    """Nothing would sign: 409, rotate first; the key stays active and published."""
    only = by_alg(admin_api, "ES256")
    response = admin_api.post(f"/keys/{only['kid']}/retire", json={"immediately": True})
    assert "rotate first" in assert_problem(response, 409)["detail"]
    assert by_alg(admin_api, "ES256")["kid"] == only["kid"]
    assert only["kid"] in published_kids(app)
    assert audited(app, "key.retire") == []


def test_unknown_key_is_404(admin_api: Api) -> None:
    response = admin_api.post("/keys/no-such-kid/retire", json={})
    assert "no signing key no-such-kid" in assert_problem(response, 404)["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/keys/rotate", {"alg": "HS256"}, "body.alg"),
        ("/keys/rotate", {"private_jwk": {"kty": "oct"}}, "body.private_jwk"),
        ("/keys/KID/retire", {"now": True}, "body.now"),
    ],
)
def test_AUTHZ_04_unknown_fields_and_algorithms_are_refused(
    admin_api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    before = key_list(admin_api)
    kid = before[0]["kid"]
    problem = assert_problem(admin_api.post(path.replace("KID", kid), json=body), 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert key_list(admin_api) == before


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
def test_AUTHZ_01_no_token_is_401(
    app: Flask, keys: None, method: str, path: str, body: Any
) -> None:
    anonymous = Api(app.test_client(), None)
    response = anonymous.call(method, path.replace("KID", "any"), json=body)
    assert_problem(response, 401)
    assert "kid" not in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "body"), [op for op in OPERATIONS if op[0] != "GET"])
def test_AUTHZ_02_auditor_lists_keys_but_cannot_rotate_or_retire(
    service_account: Callable[..., Api], method: str, path: str, body: Any
) -> None:
    auditor = service_account("auditor")
    before = key_list(auditor)
    response = auditor.call(method, path.replace("KID", before[0]["kid"]), json=body)
    assert assert_problem(response, 403)["missing"] == "keys:write"
    assert key_list(auditor) == before


def test_AUTHZ_02_keys_need_their_own_permission(service_account: Callable[..., Api]) -> None:
    """A user manager (no keys:read) does not see the keys."""
    manager = service_account("user-manager")
    assert assert_problem(manager.get("/keys"), 403)["missing"] == "keys:read"
    text = json.dumps(manager.get("/keys").json)
    assert "ES256" not in text
