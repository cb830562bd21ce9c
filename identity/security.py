"""Web security: client address, safe redirects, response headers, request ids."""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from identity.errors import InvalidInput
from identity.settings import Settings

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# No inline script anywhere (BCP-40); pages may only talk to and post to this origin, plus
# the origins a view allows for its forms (``allow_form_target``).
_CSP_BEFORE_FORM_ACTION = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'"
)
_CSP_AFTER_FORM_ACTION = "; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
CONTENT_SECURITY_POLICY = _CSP_BEFORE_FORM_ACTION + _CSP_AFTER_FORM_ACTION


def csp_source(uri: str) -> str:
    """The CSP source expression for a (registered, validated) redirect URI: its origin, or
    ``scheme:`` for a native app's private-use scheme (RFC 8252 section 7.1)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    extra = "".join(f" {csp_source(uri)}" for uri in dict.fromkeys(form_targets))
    return _CSP_BEFORE_FORM_ACTION + extra + _CSP_AFTER_FORM_ACTION


def allow_form_target(uri: str) -> None:
    """Let this page's forms end, through redirects, at ``uri``'s origin.

    CSP's form-action also governs the redirects that follow a form submission: Chromium
    refused the sign-in and consent forms whose answers redirect to the client with the
    code ("violates form-action 'self'"). Views call this with the client's validated
    redirect URI on pages whose form continues an authorization request.
    """
    g.form_targets = [*g.get("form_targets", ()), uri]


REFERRER_POLICY = "same-origin"
MAX_NEXT_LENGTH = 2000


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
        return original or "0.0.0.0"  # noqa: S104 - an address label, not a bind  # nosec B104


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a local path may follow ``next=`` (BCP-04): no scheme, host, or ``//``."""
    if not target or len(target) > MAX_NEXT_LENGTH:
        return default
    if any(ch < " " or ch == "\\" for ch in target):  # a control character or a backslash
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
    return f"{random.getrandbits(64):016x}"  # unique, not secret (above)  # nosec B311


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def has_nul(values: Iterable[tuple[str, str]]) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in values)


def setup_input_guard(app: Flask) -> None:
    """No parameter of any request may hold a NUL character: none is ever meaningful, and
    PostgreSQL refuses them in text (a client_id=a%00b answered 500). The request is refused
    in the protocol's own error format before any view reads it."""

    def _refuse_nul() -> None:
        # The query is parsed only when it may hold one (%00, or a raw NUL): most don't.
        query = request.query_string
        maybe = b"%00" in query or b"\x00" in query
        if "\x00" in request.path or (maybe and has_nul(request.args.items(multi=True))):
            raise InvalidInput("The request contains a NUL character.")
        form = request.method == "POST" and request.mimetype in FORM_TYPES
        if form and has_nul(request.form.items(multi=True)):
            raise InvalidInput("The request contains a NUL character.")

    app.before_request(_refuse_nul)


def setup_request_id(app: Flask) -> None:
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else new_request_id()

    # Every answer carries its id, the ones rejected by a later hook (CSRF's) included.
    app.before_request(_assign_request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")  # one look-up of g instead of two
        if request_id is not None:
            response.headers["X-Request-ID"] = request_id
        return response


def _public(cache_control: str) -> bool:
    """Whether a Cache-Control value has the ``public`` directive (split by hand: this runs
    on every answer, and Werkzeug's parsed header object costs several times as much)."""
    return any(part.strip().lower() == "public" for part in cache_control.split(","))


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
        html = response.mimetype == "text/html"
        # A view that chose its own caching (discovery and JWKS are public) keeps it whole:
        # no Pragma: no-cache beside its max-age, and no Vary: Cookie on a public document.
        own_caching = "cache-control" in present
        defaults = [*always, *https_only, *(() if static or own_caching else not_static)]
        if html:
            policy = content_security_policy(g.get("form_targets", ()))
            defaults.append(("Content-Security-Policy", policy))
        for name, value in defaults:
            if name.lower() not in present:
                headers.add(name, value)
        if not static and not (own_caching and _public(headers["Cache-Control"])):
            if "vary" in present:
                response.vary.add("Cookie")
            else:
                headers.add("Vary", "Cookie")
        if "server" in present:
            del headers["Server"]
        return response
