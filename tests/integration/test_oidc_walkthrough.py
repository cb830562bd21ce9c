"""docs/oidc.md's "The code flow with curl" runs as written against a real server.

The blocks marked ``<!-- doc-test: walkthrough -->`` run in order in one bash process
(``set -euo pipefail``), with the issuer of the text replaced by the test server's URL and
``identity`` on the PATH pointing at the server's instance. The one block marked
``walkthrough browser`` (``CODE=paste-the-code-here``) is the person's part: a small script
plays the browser (sign-in, Allow), checks ``state`` and ``iss`` as the text asks, and
sets ``CODE`` from the callback URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.integration.conftest import BIN, Harness, require

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "oidc.md"
DOC_ISSUER = "http://127.0.0.1:8000"
EMAIL = "walker@example.org"
BLOCK = re.compile(
    r"^<!-- doc-test: (walkthrough(?: browser)?) -->\n```console\n(.*?)^```$", re.S | re.M
)

pytestmark = pytest.mark.slow

# The browser's part, run as `CODE=$(python browser.py "$AUTHORIZE_URL" "$STATE" "$ISSUER")`:
# sign in, press Allow, and print the code of the callback URL after checking state and iss.
BROWSER = """
import os, re, sys
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from tests.conftest import csrf_token

url, state, issuer = sys.argv[1:]
with requests.Session() as browser:
    response = browser.get(url, allow_redirects=False, timeout=10)
    for _ in range(10):
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["Location"])
            if not url.startswith(issuer):
                break  # at the client: nothing listens there
            response = browser.get(url, allow_redirects=False, timeout=10)
        elif 'action="/sign-in"' in response.text:
            next_value = parse_qs(urlsplit(url).query)["next"][0]
            form = {"email": os.environ["WALKER_EMAIL"], "password": os.environ["WALKER_PASSWORD"]}
            form.update(csrf_token=csrf_token(response.text), next=next_value)
            url = urljoin(url, "/sign-in")
            response = browser.post(url, data=form, allow_redirects=False, timeout=10)
        elif 'action="/authorize/consent"' in response.text:
            found = re.search(r'name="request_id" type="hidden" value="([^"]+)"', response.text)
            form = {"csrf_token": csrf_token(response.text), "decision": "allow"}
            form["request_id"] = found.group(1)
            url = urljoin(url, "/authorize/consent")
            response = browser.post(url, data=form, allow_redirects=False, timeout=10)
        else:
            raise SystemExit(f"unexpected {response.status_code} at {url}: {response.text[:500]}")
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("http://127.0.0.1:9000/callback?"), url
    assert params["state"] == state, params
    assert params["iss"] == issuer, params
    print(params["code"])
"""


def walkthrough() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text())


def test_the_walkthrough_is_in_the_docs() -> None:
    """The walk-through has its steps: client and discovery, PKCE, the browser, the code
    exchange, UserInfo and refresh."""
    blocks = walkthrough()
    assert [marker for marker, _ in blocks].count("walkthrough browser") == 1
    text = "".join(body for _, body in blocks)
    for step in (
        "identity clients create",
        "/.well-known/openid-configuration",
        "openssl dgst -sha256",
        "code_challenge_method=S256",
        "grant_type=authorization_code",
        "/userinfo",
        "grant_type=refresh_token",
    ):
        assert step in text, step


def test_the_curl_walkthrough_runs_against_a_real_server(
    identity_factory: Harness, tmp_path: Path
) -> None:
    """Every command of the walk-through succeeds in order against a real server, and the
    answers are those the text describes: an ID token for the client with the nonce, the
    user's claims from UserInfo, a rotated refresh token."""
    for tool in ("curl", "openssl"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    server = identity_factory.server()
    server.instance.create_user(EMAIL, PASSWORD)
    browser = tmp_path / "browser.py"
    browser.write_text(BROWSER)

    parts = []
    for marker, body in walkthrough():
        step = body
        if marker == "walkthrough browser":
            step = f'CODE=$({sys.executable} {browser} "$AUTHORIZE_URL" "$STATE" "$ISSUER")\n'
        parts.append(step.replace(DOC_ISSUER, server.url))
    # Show what the text leaves in the shell, for the checks below.
    parts.append('printf "NONCE=%s\\nCLIENT_ID=%s\\n" "$NONCE" "$CLIENT_ID"\n')
    work = tmp_path / "work"
    work.mkdir()
    env: dict[str, Any] = {
        **server.instance.env,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "WALKER_EMAIL": EMAIL,
        "WALKER_PASSWORD": PASSWORD,
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "".join(parts)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

    lines = result.stdout.splitlines()
    shell = dict(line.split("=", 1) for line in lines[-2:])
    assert lines[0] == server.url + "/oauth/token"  # discovery's token_endpoint
    assert lines[1].startswith(server.url + "/authorize?response_type=code&")
    claims, userinfo = (json.loads(line) for line in lines[2:4])
    assert claims["iss"] == server.url
    assert claims["aud"] == shell["CLIENT_ID"]
    assert claims["nonce"] == shell["NONCE"]
    assert userinfo["email"] == EMAIL and userinfo["sub"] == claims["sub"]
    assert int(lines[4]) > 0  # expires_in of the refreshed access token
    tokens = json.loads((work / "tokens.json").read_text())
    refreshed = json.loads((work / "refreshed.json").read_text())
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert set(refreshed["scope"].split()) == {"openid", "profile", "email", "offline_access"}
