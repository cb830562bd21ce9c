"""Rate limits kept in Redis are shared by every server process (REL-18)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.conftest import csrf_token
from tests.integration.conftest import Harness, require

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        available = bool(client.ping())
    except redis.RedisError:
        available = False
    require(available, f"Redis is not reachable at {REDIS_URL}")
    prefix = f"identity-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
        client.close()


def test_sign_in_limit_is_shared_by_two_processes(
    identity_factory: Harness, redis_prefix: str
) -> None:
    """Three sign-in POSTs spread over two server processes use up one shared 3/minute limit."""
    env = {
        "IDENTITY_RATELIMIT_STORAGE_URL": REDIS_URL,
        "IDENTITY_RATELIMIT_KEY_PREFIX": redis_prefix,
        "IDENTITY_RATELIMIT_SIGN_IN": "3/minute",
    }
    first = identity_factory.server(**env)
    second = identity_factory.server(first.instance, **env)
    servers = [first, second]
    sessions = [requests.Session(), requests.Session()]
    tokens = [
        csrf_token(s.get(srv.url + "/sign-in", timeout=10).text)
        for s, srv in zip(sessions, servers, strict=True)
    ]

    statuses = []
    for attempt in range(5):
        which = attempt % 2
        response = sessions[which].post(
            servers[which].url + "/sign-in",
            data={"csrf_token": tokens[which], "email": "nobody@example.org", "password": "wrong"},
            timeout=10,
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after = int(response.headers["Retry-After"])
            assert 0 < retry_after <= 60
    assert statuses == [200, 200, 200, 429, 429]

    # Only the POST is limited: the page itself still loads on both.
    for session, server in zip(sessions, servers, strict=True):
        assert session.get(server.url + "/sign-in", timeout=10).status_code == 200

    client = redis.Redis.from_url(REDIS_URL)
    assert any(client.scan_iter(match=f"*{redis_prefix}*")), "no rate-limit keys in Redis"
    client.close()
