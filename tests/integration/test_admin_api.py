"""The admin API as an operator first meets it, on a real server with two workers: a
service account made with the CLI manages identity through /api/v1, the decision API
explains the result on every worker, and the audit trail shows tampering."""

from __future__ import annotations

import json
import time

import requests
from sqlalchemy import create_engine, text

from tests.integration.conftest import Harness, wait_for


def test_service_account_manages_identity_and_the_decision_api_explains(
    identity_factory: Harness,
) -> None:
    """The issue's scenario end to end; every worker sees the change within a second
    (AUTHZ-06)."""
    server = identity_factory.server()
    created = server.instance.cli(
        "clients",
        "create",
        "--name",
        "ops",
        "--grant-type",
        "client_credentials",
        "--role",
        "admin",
        "--json",
    )
    ops = json.loads(created.stdout)
    token_response = requests.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "identity:admin"},
        auth=(ops["client_id"], ops["client_secret"]),
        timeout=10,
    )
    assert token_response.status_code == 200, token_response.text
    assert token_response.json()["scope"] == "identity:admin"
    api = requests.Session()
    api.headers["Authorization"] = "Bearer " + token_response.json()["access_token"]
    base = server.url + "/api/v1"

    user = api.post(
        base + "/users",
        json={
            "email": "nina@example.org",
            "password": "a long passphrase 42",
            "email_verified": True,
        },
        timeout=10,
    )
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    role = api.post(
        base + "/roles",
        json={"name": "invoice-approver", "permissions": ["invoices:approve"]},
        timeout=10,
    )
    assert role.status_code == 201, role.text
    group = api.post(base + "/groups", json={"name": "finance"}, timeout=10)
    assert group.status_code == 201, group.text
    assert api.put(f"{base}/groups/finance/members/{user_id}", timeout=10).status_code == 204
    assignment = api.post(
        base + "/assignments", json={"role": "invoice-approver", "group": "finance"}, timeout=10
    )
    assert assignment.status_code == 201, assignment.text

    check = {"subject": {"user_id": user_id}, "permission": "invoices:approve"}
    started = time.monotonic()

    def explained() -> bool:
        # Each worker must see the change within a second (change feed), whichever answers.
        answers = [api.post(base + "/authz/check", json=check, timeout=10).json() for _ in range(4)]
        return all(a["allowed"] for a in answers)

    wait_for(explained, timeout=3, what="every worker allowing the new access")
    assert time.monotonic() - started < 1.5
    decision = api.post(base + "/authz/check", json=check, timeout=10).json()
    assert [(s["type"], s["name"]) for s in decision["explanation"]["path"]] == [
        ("user", user_id),
        ("group", "finance"),
        ("role", "invoice-approver"),
        ("permission", "invoices:approve"),
    ]
    denied = api.post(
        base + "/authz/check",
        json={"subject": {"user_id": user_id}, "permission": "invoices:delete"},
        timeout=10,
    ).json()
    assert denied["allowed"] is False
    assert denied["explanation"]["missing"] == "invoices:delete"

    # The audit trail recorded it all; altering one record is found.
    assert server.instance.cli("audit", "verify").returncode == 0
    engine = create_engine(
        server.instance.database_url.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE audit_events SET outcome = 'failure' WHERE seq = "
                "(SELECT min(seq) FROM audit_events WHERE event = 'role.create')"
            )
        )
    engine.dispose()
    verify = server.instance.cli("audit", "verify", check=False)
    assert verify.returncode == 1
    assert "hash" in (verify.stdout + verify.stderr)
