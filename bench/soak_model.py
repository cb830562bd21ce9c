"""What the soak's load generator works with (bench/soak_traffic.py): the requests it
recorded, the parties it plays, and the ledger of acknowledged writes."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlencode

REDIRECT_URI = "https://rp.example.org/cb"
SCOPE = "openid profile email offline_access"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Sample:
    start: float  # seconds since the soak's clock started
    end: float
    op: str  # the request: "token:refresh", "sign-in", "userinfo", ...
    server: int
    status: int  # 0: no answer (connection refused or reset, timeout)
    ok: bool


@dataclass
class Client:
    client_id: str
    secret: str

    @property
    def auth(self) -> str:
        return basic(self.client_id, self.secret)


@dataclass
class Family:
    client: Client
    token: str  # the newest refresh token the server handed out
    rotations: int = 0


@dataclass
class Ledger:
    """Writes the servers acknowledged with a success answer."""

    families: list[Family] = field(default_factory=list)
    uncertain: int = 0  # families dropped: a rotation got no answer, so its outcome is unknown
    consents: set[tuple[str, str]] = field(default_factory=set)  # (user email, client_id)
    registered: list[Client] = field(default_factory=list)


@dataclass
class Context:
    servers: list[str]  # base URLs; the issuer is the first one's
    users: list[tuple[str, str]]  # (email, password)
    web: Client  # confidential code-flow client that asks for consent
    service: Client  # client_credentials
    resource: Client  # resource server (introspection)
    dcr_token: str


class Failed(Exception):
    """A step of an operation did not succeed; its sample is already recorded."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
    if not match:
        raise Failed(f"no hidden field {name}")
    return unescape(match.group(1))


def authorization_request(client: Client) -> tuple[str, str, str]:
    """The query string of a code flow's authorization request, its PKCE verifier and state."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(12)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    return query, verifier, state
