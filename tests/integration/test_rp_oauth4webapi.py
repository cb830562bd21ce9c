"""Interoperability: oauth4webapi, a strict third-party OAuth 2.0 / OpenID Connect client
for JavaScript, run with Node.js against the real server.

Each test runs one scenario of tests/rp/oauth4webapi.mjs in a Node process. The library
builds every request and checks every response itself (discovery issuer, state and RFC 9207
``iss`` on the callback, token responses, ID token claims, nonce, the client's registered
signing alg and the signature from jwks_uri, UserInfo ``sub``, RFC 9068 access tokens);
the script only plays the browser and reports what the library accepted.

Needs ``npm ci --prefix tests/rp``; without node_modules the tests skip, unless
IDENTITY_REQUIRE_ALL_TESTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import Harness, require
from tests.integration.relying_parties import (
    USER_EMAIL,
    USER_NAME,
    RPSite,
    approve_device,
    start_site,
)

pytestmark = pytest.mark.slow

RP_DIR = Path(__file__).resolve().parents[1] / "rp"
SCRIPT = RP_DIR / "oauth4webapi.mjs"
NODE = shutil.which("node")
NODE_TIMEOUT = 60


@pytest.fixture(scope="module")
def site(module_identity_factory: Harness) -> RPSite:
    """One server for the module, with the relying parties registered by the CLI."""
    require(
        NODE is not None and (RP_DIR / "node_modules" / "oauth4webapi").is_dir(),
        "Node.js and tests/rp/node_modules are needed (npm ci --prefix tests/rp)",
    )
    return start_site(module_identity_factory)


def _environment(site: RPSite) -> dict[str, str]:
    return {**os.environ, "RP_CONFIG": json.dumps(site.config())}


def _result(site: RPSite, stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, f"no output (exit {returncode}):\n{stderr}\n{site.server.log()[-4000:]}"
    result = json.loads(lines[-1])
    assert result.get("ok"), (
        f"oauth4webapi refused:\n{json.dumps(result, indent=2)}\n{stderr}\n"
        f"server log:\n{site.server.log()[-4000:]}"
    )
    assert returncode == 0, stderr
    return result  # type: ignore[no-any-return]


def run(site: RPSite, scenario: str, *args: str) -> dict[str, Any]:
    """Run one scenario and return the library's result."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT), scenario, *args],
        env=_environment(site),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    return _result(site, done.stdout, done.stderr, done.returncode)


def test_discovery(site: RPSite) -> None:
    """The library accepts the discovery document: issuer matches, endpoints are usable."""
    metadata = run(site, "discovery")["metadata"]
    assert metadata["issuer"] == site.issuer
    assert metadata["jwks_uri"] == site.issuer + "/jwks.json"
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert {"ES256", "RS256"} <= set(metadata["id_token_signing_alg_values_supported"])
    assert metadata["pushed_authorization_request_endpoint"] == site.issuer + "/oauth/par"


def test_code_flow_es256_confidential_client(site: RPSite) -> None:
    """Code flow with PKCE and max_age for a confidential ES256 client: the library validates
    the callback, the ID token (signature, iss, aud, nonce, alg, auth_time) and UserInfo."""
    result = run(site, "code", "web")
    client_id = site.clients["web"].client_id
    assert result["callback"]["iss"] == site.issuer
    assert result["id_token_header"]["alg"] == "ES256"
    claims = result["claims"]
    assert claims["iss"] == site.issuer
    assert claims["aud"] == client_id
    assert claims["sub"] == site.user_id
    assert claims["nonce"]
    assert claims["at_hash"]
    assert isinstance(claims["auth_time"], int)
    assert result["userinfo"]["sub"] == site.user_id
    assert result["userinfo"]["email"] == USER_EMAIL
    assert result["userinfo"]["email_verified"] is True
    assert result["userinfo"]["name"] == USER_NAME
    assert result["token_type"] == "bearer"
    assert set(result["scope"].split()) == {"openid", "profile", "email"}
    assert result["has_refresh_token"] is True


def test_code_flow_rs256_public_client(site: RPSite) -> None:
    """Code flow for a public first-party client registered with --id-token-alg RS256:
    no client secret, no consent page, and an RS256 ID token the library verifies."""
    result = run(site, "code", "rs256")
    assert result["id_token_header"]["alg"] == "RS256"
    assert result["claims"]["aud"] == site.clients["rs256"].client_id
    assert result["claims"]["sub"] == site.user_id
    assert result["userinfo"]["sub"] == site.user_id


def test_refresh_rotates_and_refuses_the_old_token(site: RPSite) -> None:
    """Refresh returns a new refresh token and a signed ID token for the same subject and
    auth_time; the old refresh token is then refused with invalid_grant, ending the family."""
    result = run(site, "refresh", "web")
    assert result["rotated"] is True
    assert result["new_access_token"] is True
    assert result["id_token_sub"] == result["original_sub"] == site.user_id
    assert result["id_token_auth_time"] == result["original_auth_time"]  # OIDC Core 12.2
    assert result["userinfo_sub"] == site.user_id
    assert result["replay_error"] == "invalid_grant"
    assert result["successor_after_replay_error"] == "invalid_grant"


def test_refresh_of_a_public_client(site: RPSite) -> None:
    """A public client (no authentication) refreshes with rotation as well."""
    result = run(site, "refresh", "rs256")
    assert result["rotated"] is True
    assert result["replay_error"] == "invalid_grant"


def test_introspection_by_a_resource_server(site: RPSite) -> None:
    """A resource server introspects another client's access and refresh tokens (RFC 7662);
    an unknown token is simply inactive."""
    result = run(site, "introspection")
    access = result["access"]
    assert access["active"] is True
    assert access["client_id"] == result["client_id"] == site.clients["web"].client_id
    assert access["sub"] == site.user_id
    assert access["iss"] == site.issuer
    assert access["token_type"] == "Bearer"
    assert set(access["scope"].split()) == {"openid", "profile", "email"}
    assert access["exp"] > time.time()
    refresh = result["refresh"]
    assert refresh["active"] is True
    assert refresh["sub"] == site.user_id
    assert result["garbage"] == {"active": False}


def test_revocation(site: RPSite) -> None:
    """Revoking the access token (RFC 7009) makes it inactive and refused at UserInfo;
    revoking the refresh token ends the grant."""
    result = run(site, "revocation")
    assert result["access_active_after"] is False
    assert result["userinfo_after"] == "invalid_token"
    assert result["refresh_active_after"] is False
    assert result["refresh_error"] == "invalid_grant"


def test_client_credentials(site: RPSite) -> None:
    """client_credentials gives a service a bearer token that the library, as a resource
    server, validates as an RFC 9068 JWT access token; introspection agrees."""
    result = run(site, "client_credentials")
    client_id = site.clients["rs"].client_id
    tokens = result["tokens"]
    assert tokens["token_type"] == "bearer"
    assert "refresh_token" not in tokens and "id_token" not in tokens
    assert tokens["scope"] == "roles"
    claims = result["access_claims"]
    assert claims["client_id"] == claims["sub"] == client_id
    assert claims["iss"] == site.issuer
    assert result["introspection"]["active"] is True
    assert result["introspection"]["client_id"] == client_id


def test_private_key_jwt(site: RPSite) -> None:
    """A client authenticating with private_key_jwt (the library signs the assertion with
    the key whose public half was registered with --jwks) gets a token and introspects it."""
    result = run(site, "private_key_jwt")
    client_id = site.clients["jwt"].client_id
    assert result["tokens"]["token_type"] == "bearer"
    assert result["tokens"]["scope"] == "roles"
    assert result["introspection"]["active"] is True
    assert result["introspection"]["client_id"] == client_id
    assert result["second_token"] is True


def test_device_flow(site: RPSite) -> None:
    """Device flow (RFC 8628): the library polls while the signed-in user approves the
    user_code at /device, then gets tokens with a verified ID token; the device code is
    single-use."""
    assert NODE is not None
    process = subprocess.Popen(
        [NODE, str(SCRIPT), "device"],
        env=_environment(site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first.get("event") == "device_authorization", first
        assert first["verification_uri"] == site.issuer + "/device"
        assert first["verification_uri_complete"].endswith(first["user_code"])
        poll = json.loads(process.stdout.readline())  # the library was told to wait...
        assert poll == {"event": "poll", "error": "authorization_pending"}, poll
        approve_device(site, first["user_code"])  # ...and the user approves meanwhile
        stdout, stderr = process.communicate(timeout=NODE_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    result = _result(site, stdout, stderr, process.returncode)
    assert "authorization_pending" in result["polls"]
    assert result["claims"]["sub"] == site.user_id
    assert result["claims"]["aud"] == site.clients["device"].client_id
    assert result["id_token_header"]["alg"] == "RS256"
    assert result["userinfo"]["email"] == USER_EMAIL
    assert result["has_refresh_token"] is True
    assert result["reuse_error"] == "invalid_grant"


def test_pushed_authorization_request(site: RPSite) -> None:
    """PAR (RFC 9126): the library pushes the request, /authorize takes only client_id and
    request_uri, and the code flow completes; the request_uri cannot be used twice."""
    result = run(site, "par")
    assert result["pushed"]["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert result["pushed"]["expires_in"] > 0
    assert result["callback"]["iss"] == site.issuer
    assert result["claims"]["sub"] == site.user_id
    assert result["userinfo"]["sub"] == site.user_id
    assert result["reused_status"] == 400


def test_rp_initiated_logout(site: RPSite) -> None:
    """RP-initiated logout with id_token_hint returns to the registered post-logout URI with
    the state, and afterwards prompt=none comes back with login_required."""
    result = run(site, "logout")
    assert result["silent_sub"] == result["sub"] == site.user_id
    assert result["sid"]
    assert result["logout_status"] in (302, 303)
    assert result["logout_location"] == result["expected_location"]
    assert result["prompt_none_error"] == "login_required"
    assert result["prompt_none_callback"]["iss"] == site.issuer
    assert "code" not in result["prompt_none_callback"]


def test_wrong_client_secret_is_refused(site: RPSite) -> None:
    """Sanity check: the same server refuses a wrong client secret with 401 invalid_client,
    so the successes above are not those of a lax server."""
    client = site.clients["web"]
    response = requests.post(
        site.issuer + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(client.client_id, "wrong secret"),
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
