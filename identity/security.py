"""Web security: client address, safe redirects, response headers, request ids."""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable
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


def new_request_id() -> str:
    """16 hex digits. A request id only correlates log lines and is shown to the user, so
    it needs to be unique, not secret: the random module's generator (which reseeds itself
    in every forked worker) instead of a getrandom() system call on every request."""
    return f"{random.getrandbits(64):016x}"


def before_every_request(app: Flask, hook: Callable[[], None]) -> None:
    """Run ``hook`` before the before-request hooks registered so far (CSRF's among them):
    a hook that rejects the request (it raises or answers) skips all that come after it."""
    app.before_request_funcs.setdefault(None, []).insert(0, hook)


def setup_request_id(app: Flask) -> None:
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else new_request_id()

    # Every answer carries its id, the ones rejected by an earlier hook included.
    before_every_request(app, _assign_request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")  # one look-up of g instead of two
        if request_id is not None:
            response.headers["X-Request-ID"] = request_id
        return response


def setup_security_headers(app: Flask, settings: Settings) -> None:
    # Each header is set unless the view set its own. One pass over the response's headers
    # instead of one ``setdefault`` scan per header: this hook runs on every answer.
    always = [
        ("X-Content-Type-Options", "nosniff"),
        # same-origin, not no-referrer: over https Flask-WTF refuses a POST without a
        # same-origin Referer, so no-referrer broke every form in real browsers. Other
        # origins still get no Referer at all (BCP-41).
        ("Referrer-Policy", REFERRER_POLICY),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    ]
    html_only = [("Content-Security-Policy", CONTENT_SECURITY_POLICY)]
    https_only = [("Strict-Transport-Security", "max-age=31536000; includeSubDomains")]
    # Pages that depend on who is signed in must never be cached for someone else
    # (SESS-11); static assets keep their own caching.
    not_static = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    if not settings.issuer_is_https:
        https_only = []

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers
        static = request.endpoint == "static"
        defaults = [
            *always,
            *(html_only if response.mimetype == "text/html" else ()),
            *https_only,
            *(() if static else not_static),
        ]
        for name, value in defaults:
            if name.lower() not in present:
                headers.add(name, value)
        if not static:
            if "vary" in present:
                response.vary.add("Cookie")
            else:
                headers.add("Vary", "Cookie")
        if "server" in present:
            del headers["Server"]
        return response
