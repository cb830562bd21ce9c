"""Revocations reach every worker of every instance within a second (TOK-19), whichever
channel carries them: two `identity serve` processes with two workers each, on one
database, with PostgreSQL's LISTEN/NOTIFY or Redis pub/sub as the channel; and a process
whose channel cannot be reached falls back to reading the database, so a revocation is
honoured at once there too (identity.revocation_state).

The workers check tokens from memory on PostgreSQL only, so this runs in the PostgreSQL
pass (marked ``postgresql``); on SQLite every check reads the database, which the rest of
the suite covers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import urllib.parse

import pytest
import requests

from tests.integration.conftest import Harness, Server, csrf_token, sign_in
from tests.integration.test_change_feed import (
    WITHIN,
    active,
    client_credentials,
    create_client,
    everywhere,
    settle_within,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "a long and rather unusual password 42"


@pytest.fixture(scope="module", params=["notify", "redis"])
def pair(request: pytest.FixtureRequest, module_identity_factory: Harness) -> list[Server]:
    """Two instances of one deployment, shared by the module's tests (each test makes its
    own clients and users)."""
    channel = REDIS_URL if request.param == "redis" else ""
    first = module_identity_factory.server(IDENTITY_CHANGE_CHANNEL_URL=channel)
    second = module_identity_factory.server(
        first.instance, IDENTITY_ISSUER=first.url, IDENTITY_CHANGE_CHANNEL_URL=channel
    )
    return [first, second]


def user_token(server: Server, email: str) -> tuple[str, dict[str, str]]:
    """A user's access token through the code flow (sign-in, consent, PKCE) at ``server``;
    also the client that got it."""
    instance = server.instance
    instance.create_user(email, PASSWORD)
    rp = json.loads(
        instance.cli(
            "clients", "create", "--name", "App", "--redirect-uri", REDIRECT_URI, "--json"
        ).stdout
    )
    browser = requests.Session()
    assert sign_in(browser, server.url, email, PASSWORD).status_code == 200
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": rp["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    page = browser.get(f"{server.url}/authorize?{query}", timeout=10)
    assert page.status_code == 200 and 'action="/authorize/consent"' in page.text, page.text
    request_id = re.search(r'name="request_id" type="hidden" value="([^"]+)"', page.text)
    assert request_id
    answer = browser.post(
        f"{server.url}/authorize/consent",
        data={
            "csrf_token": csrf_token(page.text),
            "request_id": request_id.group(1),
            "decision": "allow",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code in (302, 303), answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI), location
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    tokens = requests.post(
        server.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(rp["client_id"], rp["client_secret"]),
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["access_token"]), rp


def test_TOK_19_a_token_revoked_at_one_instance_is_refused_by_every_worker_within_a_second(
    pair: list[Server],
) -> None:
    servers = pair
    instance = servers[0].instance
    service = create_client(instance, "Service")
    rs = create_client(instance, "Resource server", "--resource-server")
    token, other = client_credentials(servers[0], service), client_credentials(servers[1], service)
    assert everywhere(servers, lambda s: active(s, rs, token))  # every worker has checked it
    revoked = requests.post(
        servers[0].url + "/oauth/revoke",
        data={"token": token},
        auth=(service["client_id"], service["client_secret"]),
        timeout=10,
    )
    assert revoked.status_code == 200
    took = settle_within(WITHIN, servers, lambda s: not active(s, rs, token))
    assert everywhere(servers, lambda s: active(s, rs, other)), took  # only that token


def test_TOK_19_a_user_disabled_by_the_command_is_refused_everywhere_within_a_second(
    pair: list[Server],
) -> None:
    """The command is a third process: its commit's message reaches both instances."""
    servers = pair
    instance = servers[0].instance
    rs = create_client(instance, "Resource server", "--resource-server")
    email = f"dana-{secrets.token_hex(4)}@example.org"
    token, _ = user_token(servers[0], email)
    assert everywhere(servers, lambda s: active(s, rs, token))
    instance.cli("users", "disable", email)
    settle_within(WITHIN, servers, lambda s: not active(s, rs, token))
    # UserInfo agrees: the token and the cached profile are both gone.
    for server in servers:
        answer = requests.get(
            server.url + "/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 401


def test_TOK_19_an_instance_that_cannot_hear_its_channel_reads_the_database(
    pair: list[Server], module_identity_factory: Harness
) -> None:
    """A third instance whose Redis channel nobody answers never trusts its memory, so a
    revocation made at another instance is honoured by its very next check."""
    hearing = pair[0]
    instance = hearing.instance
    deaf = module_identity_factory.server(
        instance, IDENTITY_ISSUER=hearing.url, IDENTITY_CHANGE_CHANNEL_URL="redis://127.0.0.1:1/0"
    )
    deaf.errors_expected = True  # it logs that its channel is down, as it should
    service = create_client(instance, "Service")
    rs = create_client(instance, "Resource server", "--resource-server")
    token = client_credentials(hearing, service)
    assert everywhere([deaf], lambda s: active(s, rs, token))
    revoked = requests.post(
        hearing.url + "/oauth/revoke",
        data={"token": token},
        auth=(service["client_id"], service["client_secret"]),
        timeout=10,
    )
    assert revoked.status_code == 200
    assert everywhere([deaf], lambda s: not active(s, rs, token))
