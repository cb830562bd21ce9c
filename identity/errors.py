"""The error hierarchy, and the one place errors become responses.

Domain code raises ``IdentityError`` subclasses whose ``message`` is safe to show. Anything
else is a bug: it is logged with the request id and answered with a generic 500 whose body
never carries the exception text.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    render_template,
    request,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

# The classes live in identity.exceptions, which imports no Flask (the settings and the
# `identity` command use them); re-exported here, where they always were.
from identity.exceptions import (
    ConfigError,
    Conflict,
    Forbidden,
    IdentityError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue

log = logging.getLogger("identity.errors")

__all__ = [
    "ConfigError",
    "Conflict",
    "Forbidden",
    "IdentityError",
    "InvalidInput",
    "NotFound",
    "ServiceUnavailable",
    "error_response",
    "json_error",
    "machine_facing",
    "problem_facing",
    "problem_response",
    "register_error_handlers",
    "store_unavailable",
    "store_unavailable_response",
    "wants_json",
]


# Status codes with their own page; anything else falls back to the generic page.
PAGES = {400, 403, 404, 405, 413, 429, 500, 503}


# Blueprints whose callers are programs (the OAuth endpoints, discovery, health): their
# errors are JSON whatever the Accept header says. Pages answer with HTML error pages.
MACHINE_BLUEPRINTS: set[str] = set()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def machine_facing(bp: Blueprint) -> Blueprint:
    """Mark a blueprint as answering programs: its errors are JSON (``json_error``)."""
    MACHINE_BLUEPRINTS.add(bp.name)
    return bp


# Blueprints that answer RFC 9457 problem details (the admin API).
PROBLEM_BLUEPRINTS: set[str] = set()
# Each kind of problem has a stable type URI: this prefix and the error's code
# (docs/api.md lists them).
PROBLEM_TYPE = "urn:identity:problem:"


# Their URL prefixes: a path under one that matches no route (404) is theirs too.
PROBLEM_PREFIXES: dict[str, str] = {}


def problem_facing(bp: Blueprint) -> Blueprint:
    """Mark a blueprint as answering RFC 9457 ``application/problem+json`` errors."""
    PROBLEM_BLUEPRINTS.add(bp.name)
    if bp.url_prefix:
        PROBLEM_PREFIXES[bp.url_prefix.rstrip("/") + "/"] = bp.name
    return bp


def problem_response(
    status: int,
    code: str,
    detail: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> Response:
    """An RFC 9457 problem: ``type`` names the kind, ``title`` its status, ``detail`` this
    occurrence; extension members (``errors``, ``request_id``) follow."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        **extra,
    }
    if detail:
        body["detail"] = detail
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(NO_STORE)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _blueprint() -> str | None:
    """The blueprint that owns the requested path, also for a wrong method (405), where
    routing matched no rule: the rule for one of the allowed methods says."""
    exception = request.routing_exception
    if request.blueprint:
        return request.blueprint
    for prefix, name in PROBLEM_PREFIXES.items():
        if request.path.startswith(prefix):
            return name
    if not isinstance(exception, MethodNotAllowed):
        return None
    adapter = current_app.create_url_adapter(request)
    for method in exception.valid_methods or ():
        with contextlib.suppress(HTTPException):
            endpoint, _ = adapter.match(method=method) if adapter else ("", None)
            return str(endpoint).rpartition(".")[0] or None
    return None


def wants_json() -> bool:
    if _blueprint() in MACHINE_BLUEPRINTS:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return request.is_json or best == "application/json"


def json_error(
    status: int,
    code: str,
    description: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> Response:
    """The one JSON error answer: the RFC 6749 section 5.2 body (``error``,
    ``error_description``) with the request id, never cached. OAuth endpoints, UserInfo
    (with its ``WWW-Authenticate`` challenge in ``headers``), registration and health all
    answer this way; the admin API will answer RFC 9457 problem details instead."""
    body: dict[str, Any] = {"error": code, **extra}
    if description:
        body["error_description"] = description
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    response = jsonify(body)
    response.status_code = status
    response.headers.update(NO_STORE)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> Response:
    if _blueprint() in PROBLEM_BLUEPRINTS:
        return problem_response(status, code, message, headers, **extra)
    if wants_json():
        return json_error(status, code, message)
    request_id = g.get("request_id")
    template = f"errors/{status}.html" if status in PAGES else "errors/generic.html"
    context: dict[str, Any] = {}
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        # A store is down and the session was rolled back, which expired the signed-in
        # User: reading its email for the page header would reload it from the database
        # that may be what failed, and turn this page into a 500. The 503 page names no one.
        context["current_user"] = None
    html = render_template(
        template, status=status, message=message, request_id=request_id, **context
    )
    response = make_response(html)
    response.status_code = status
    return response


_SQLITE_UNAVAILABLE = ("locked", "unable to open", "disk i/o", "full", "readonly", "busy")


def store_unavailable(error: OperationalError) -> bool:
    """Whether a database error means "not reachable now" rather than a bug."""
    if error.connection_invalidated:
        return True
    orig = error.orig
    if type(orig).__module__.startswith("psycopg"):
        return True  # psycopg reports SQL mistakes as ProgrammingError, not OperationalError
    return any(word in str(orig).lower() for word in _SQLITE_UNAVAILABLE)


def store_unavailable_response(error: Exception) -> Response:
    """The answer while the database or the rate-limit store is down: a 503 that says "try
    again", never a 500 or a fallback that allows (REL-02, LOG-05). An outage is expected
    operation, not a bug: one warning line, no traceback, nothing about the request's user."""
    store = (
        "rate_limit" if isinstance(error, RedisConnectionError | RedisTimeoutError) else "database"
    )
    log.warning(
        "store unavailable",
        extra={"event": "error.store_unavailable", "store": store, "error": type(error).__name__},
    )
    return error_response(503, ServiceUnavailable.code, ServiceUnavailable.message)


def register_error_handlers(app: Flask, rollback: Callable[[], None]) -> None:
    """Every error becomes a response here, after ``rollback`` undid what the request
    changed (the unit of work commits only requests that returned a response)."""

    def undo() -> None:
        with contextlib.suppress(OperationalError):  # the database may be what failed
            rollback()

    @app.errorhandler(IdentityError)
    def _identity_error(error: IdentityError) -> ResponseReturnValue:
        undo()
        server_fault = error.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR
        if server_fault and not isinstance(error, ServiceUnavailable):
            # A server-side fault (e.g. keys that do not decrypt): log it, show nothing.
            log.error(error.message, extra={"event": "error.server", "code": error.code})
            return error_response(500, "server_error", IdentityError.message)
        return error_response(
            error.status_code, error.code, error.message, error.headers, **error.extra
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        undo()
        original = getattr(error, "original_exception", None)
        if isinstance(original, RedisConnectionError | RedisTimeoutError | OperationalError):
            # Raised after the view: Flask-Limiter counting a failed sign-in against the
            # address, or the unit of work's commit. A store that is down is still a 503.
            return _store_unavailable(original)
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, error.description or error.name)
        # Keep headers such as Allow (405) and Retry-After (429) that the exception carries.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _store_unavailable(error: Exception) -> ResponseReturnValue:
        if isinstance(error, OperationalError) and not store_unavailable(error):
            return _unexpected(error)  # SQLite reports bugs ("no such table") this way too
        undo()
        return store_unavailable_response(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> ResponseReturnValue:
        log.exception("unhandled error", extra={"event": "error.unhandled"})
        undo()
        return error_response(500, "server_error", IdentityError.message)
