"""The error hierarchy, and the one place errors become responses.

Domain code raises ``IdentityError`` subclasses whose ``message`` is safe to show. Anything
else is a bug: it is logged with the request id and answered with a generic 500 whose body
never carries the exception text.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from flask import Response, g, jsonify, make_response, render_template, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue

log = logging.getLogger("identity.errors")


class IdentityError(Exception):
    """Base of every error the server raises on purpose."""

    status_code = 500
    code = "server_error"
    message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message


class ConfigError(IdentityError):
    """Invalid configuration; start-up stops with this one-line message."""

    code = "invalid_configuration"


class InvalidInput(IdentityError):
    status_code = 400
    code = "invalid_request"
    message = "The request is not valid."


class NotFound(IdentityError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Forbidden(IdentityError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do that."


class Conflict(IdentityError):
    status_code = 409
    code = "conflict"
    message = "That conflicts with existing data."


class ServiceUnavailable(IdentityError):
    status_code = 503
    code = "temporarily_unavailable"
    message = "The service is temporarily unavailable. Please try again shortly."


# Status codes with their own page; anything else falls back to the generic page.
PAGES = {400, 403, 404, 405, 413, 429, 500, 503}


# Machine-facing paths answer errors in JSON whatever the Accept header says.
JSON_PATHS = ("/oauth/", "/userinfo", "/.well-known/", "/jwks.json", "/api/", "/healthz", "/readyz")


def wants_json() -> bool:
    if request.path.startswith(JSON_PATHS):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return request.is_json or best == "application/json"


def error_response(status: int, code: str, message: str) -> Response:
    request_id = getattr(g, "request_id", None)
    if wants_json():
        body = {"error": code, "error_description": message}
        if request_id:
            body["request_id"] = request_id
        response = jsonify(body)
    else:
        template = f"errors/{status}.html" if status in PAGES else "errors/generic.html"
        html = render_template(template, status=status, message=message, request_id=request_id)
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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(IdentityError)
    def _identity_error(error: IdentityError) -> ResponseReturnValue:
        if error.status_code >= 500 and not isinstance(error, ServiceUnavailable):
            # A server-side fault (e.g. keys that do not decrypt): log it, show nothing.
            log.error(error.message, extra={"event": "error.server", "code": error.code})
            return error_response(500, "server_error", IdentityError.message)
        return error_response(error.status_code, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
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
        # The database (or the rate-limit store) is down: fail closed with a 503 that
        # says "try again", never a 500 or a fallback that allows (REL-02, LOG-05).
        if isinstance(error, OperationalError) and not store_unavailable(error):
            return _unexpected(error)  # SQLite reports bugs ("no such table") this way too
        log.error(
            "store unavailable",
            extra={"event": "error.store_unavailable", "error": type(error).__name__},
        )
        from identity.extensions import db

        with contextlib.suppress(OperationalError):
            db.session.rollback()
        return error_response(503, ServiceUnavailable.code, ServiceUnavailable.message)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> ResponseReturnValue:
        log.exception("unhandled error", extra={"event": "error.unhandled"})
        from identity.extensions import db

        db.session.rollback()
        return error_response(500, "server_error", IdentityError.message)
