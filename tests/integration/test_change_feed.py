"""Caches of every worker of every instance hear of changes within a second (ISSUE7-08):
two servers, two workers each, on one database, and changes made by the `identity` command
(a third process)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from tests.integration.conftest import Harness, Server

pytestmark = pytest.mark.slow
# Enough requests that each of a server's two workers answers several of them.
REQUESTS_PER_SERVER = 16
WITHIN = 1.0


def client_credentials(server: Server, client: dict[str, str]) -> str:
    response = requests.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def active(server: Server, rs: dict[str, str], token: str) -> bool:
    response = requests.post(
        server.url + "/oauth/introspect",
        data={"token": token},
        auth=(rs["client_id"], rs["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["active"])


def everywhere(servers: list[Server], check: Any) -> bool:
    """``check(server)`` holds on every answer of every worker of every server."""
    return all(check(s) for s in servers for _ in range(REQUESTS_PER_SERVER))


def settle_within(seconds: float, servers: list[Server], check: Any) -> float:
    """How long after now until ``check`` holds everywhere; fails after ``seconds``."""
    start = time.monotonic()
    while True:
        if everywhere(servers, check):
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not everywhere within {seconds} s")
        time.sleep(0.02)


@pytest.fixture
def pair(identity_factory: Harness) -> tuple[list[Server], Any]:
    first = identity_factory.server()
    # One deployment: the same database and the same issuer.
    second = identity_factory.server(first.instance, IDENTITY_ISSUER=first.url)
    return [first, second], first.instance


def create_client(instance: Any, name: str, *args: str) -> dict[str, str]:
    result = instance.cli(
        "clients",
        "create",
        "--name",
        name,
        "--grant-type",
        "client_credentials",
        "--scope",
        "roles",
        *args,
        "--json",
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_ISSUE7_08_retire_now_reaches_every_worker_and_instance_within_a_second(pair):
    """After `identity keys retire KID --now`, tokens that key signed stop verifying on every
    worker of both servers within a second, and new tokens come from the successor."""
    servers, instance = pair
    service = create_client(instance, "Service")
    rs = create_client(instance, "Resource server", "--resource-server")
    token = client_credentials(servers[0], service)
    assert everywhere(servers, lambda s: active(s, rs, token))
    listed = json.loads(instance.cli("keys", "list", "--json").stdout)
    kid = next(k["kid"] for k in listed if k["alg"] == "ES256" and k["status"] == "active")
    instance.cli("keys", "rotate", "--alg", "ES256")
    instance.cli("keys", "retire", kid, "--now")
    took = settle_within(WITHIN, servers, lambda s: not active(s, rs, token))
    fresh = client_credentials(servers[1], service)
    assert everywhere(servers, lambda s: active(s, rs, fresh)), took


def test_ISSUE7_08_a_deleted_client_is_refused_everywhere_within_a_second(pair):
    """Client changes travel the same way: a deleted client's tokens and credentials stop
    working on every worker of both servers within a second, though clients are cached."""
    servers, instance = pair
    service = create_client(instance, "Service")
    rs = create_client(instance, "Resource server", "--resource-server")
    token = client_credentials(servers[0], service)
    assert everywhere(servers, lambda s: active(s, rs, token))  # cached everywhere now
    instance.cli("clients", "delete", service["client_id"], "--yes")
    settle_within(WITHIN, servers, lambda s: not active(s, rs, token))
