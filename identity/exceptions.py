"""The error classes, without Flask.

Domain code raises ``IdentityError`` subclasses whose ``message`` is safe to show. They live
here, apart from the handlers that turn them into responses (identity.errors, which
re-exports them), so that the settings and the ``identity`` command can use them without
importing Flask, SQLAlchemy and Redis.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base of every error the server raises on purpose."""

    status_code = 500
    code = "server_error"
    message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        # Members an RFC 9457 problem adds to its body (the admin API), and headers.
        self.extra: dict[str, object] = {}
        self.headers: list[tuple[str, str]] = []


class ConfigError(IdentityError):
    """Invalid configuration; start-up stops with this one-line message."""

    code = "invalid_configuration"


class InvalidInput(IdentityError):
    status_code = 400
    code = "invalid_request"
    message = "The request is not valid."


class ValidationFailed(InvalidInput):
    """Request data that breaks a schema: ``errors`` lists each bad field."""

    status_code = 422
    code = "validation_error"
    message = "The request data is not valid."

    def __init__(self, errors: list[dict[str, object]], message: str | None = None) -> None:
        super().__init__(message)
        self.extra["errors"] = errors


class Unauthorized(IdentityError):
    """No valid credentials (RFC 9110 section 15.5.2); the challenge goes in ``headers``."""

    status_code = 401
    code = "unauthorized"
    message = "Authentication is required."

    def __init__(self, message: str | None = None, challenge: str = "Bearer") -> None:
        super().__init__(message)
        self.headers.append(("WWW-Authenticate", challenge))


class PreconditionFailed(IdentityError):
    status_code = 412
    code = "precondition_failed"
    message = "The resource changed since you read it: read it again (its ETag is new)."


class PreconditionRequired(IdentityError):
    status_code = 428
    code = "precondition_required"
    message = "Send If-Match with the ETag you read, so that no change is overwritten."


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
