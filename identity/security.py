"""Web security: client address, safe redirects, response headers, request ids."""

from __future__ import annotations

import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from identity.settings import Settings

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# No inline script anywhere (BCP-40); pages may only talk to and post to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


REFERRER_POLICY = "same-origin"


def client_ip() -> str:
    """The client address, from X-Forwarded-For only when trusted proxies are configured.

    An address that does not parse falls back to the TCP peer instead of skipping checks
    (authentik CVE-2024-47070).
    """
    candidate = request.remote_addr or ""
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        original = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        return original or "0.0.0.0"  # noqa: S104 - an address label, not a bind


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a local path may follow ``next=`` (BCP-04): no scheme, host, or ``//``."""
    if not target or len(target) > 2000:
        return default
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def setup_proxy(app: Flask, settings: Settings) -> None:
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]


def setup_request_id(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else secrets.token_hex(8)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response


def setup_security_headers(app: Flask, settings: Settings) -> None:
    https = settings.issuer_is_https

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: over https Flask-WTF refuses a POST without a
        # same-origin Referer, so no-referrer broke every form in real browsers. Other
        # origins still get no Referer at all (BCP-41).
        headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages that depend on who is signed in must never be cached for someone else
        # (SESS-11); static assets keep their own caching.
        if request.endpoint != "static":
            headers.setdefault("Cache-Control", "no-store")
            headers.setdefault("Pragma", "no-cache")
            response.vary.add("Cookie")
        headers.pop("Server", None)
        return response
