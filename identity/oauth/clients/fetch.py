"""Bounded, SSRF-resistant fetching of client documents such as ``jwks_uri`` (INPUT-05), and
the same rules for what the server POSTs to clients (back-channel logout tokens).

https only; the host is resolved once and every address must be public (loopback, private,
link-local, multicast and reserved ranges are refused unless allowed by setting); the
connection goes to the address that was checked, so DNS rebinding cannot redirect it;
redirects are not followed; the body is capped and the whole exchange has a timeout.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from identity.errors import InvalidInput

MAX_BYTES = 64 * 1024
TIMEOUT = 5.0


class FetchError(InvalidInput):
    code = "invalid_client_metadata"
    message = "The document could not be fetched."


def _allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address)
    if allow_private:
        return not (ip.is_multicast or ip.is_unspecified)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def resolve(host: str, port: int, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"cannot resolve {host}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(_allowed(a, allow_private) for a in addresses):
        raise FetchError(f"{host} resolves to an address that may not be fetched")
    return str(addresses[0])


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a pre-checked address while verifying the certificate of ``host``."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=TIMEOUT, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), timeout=TIMEOUT)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_json(url: str, *, allow_private: bool = False) -> Any:
    body = fetch(url, allow_private=allow_private, accept="application/json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError(f"{url} is not JSON") from None


def fetch(url: str, *, allow_private: bool = False, accept: str = "*/*") -> bytes:
    """The body of an https GET, under the rules above."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise FetchError("only https URLs without user info may be fetched")
    port = parts.port or 443
    address = resolve(parts.hostname, port, allow_private)
    connection = _PinnedHTTPSConnection(parts.hostname, address, port, ssl.create_default_context())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", path, headers={"Accept": accept, "User-Agent": "identity"})
        response = connection.getresponse()
        if response.status != http.HTTPStatus.OK:
            raise FetchError(f"fetching {url} answered HTTP {response.status}")
        body = response.read(MAX_BYTES + 1)
    except (OSError, http.client.HTTPException, ssl.SSLError) as error:
        raise FetchError(f"fetching {url} failed: {type(error).__name__}") from None
    finally:
        connection.close()
    if len(body) > MAX_BYTES:
        raise FetchError(f"{url} is larger than {MAX_BYTES} bytes")
    return body


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain http to a pre-checked address: only where private addresses are allowed."""

    def __init__(self, host: str, address: str, port: int) -> None:
        super().__init__(host, port, timeout=TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), timeout=TIMEOUT)


def post(url: str, body: str, content_type: str, *, allow_private: bool = False) -> int:
    """POST ``body`` to ``url`` under the rules above; returns the status."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password:
        raise FetchError("only https URLs without user info may be called")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve(parts.hostname, port, allow_private)
    connection: http.client.HTTPConnection = (
        _PinnedHTTPSConnection(parts.hostname, address, port, ssl.create_default_context())
        if parts.scheme == "https"
        else _PinnedHTTPConnection(parts.hostname, address, port)
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": content_type, "User-Agent": "identity"},
        )
        response = connection.getresponse()
        response.read(MAX_BYTES)
        return response.status
    except (OSError, http.client.HTTPException, ssl.SSLError) as error:
        raise FetchError(f"calling {url} failed: {type(error).__name__}") from None
    finally:
        connection.close()
