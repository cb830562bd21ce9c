"""Declaring an admin API operation once: its route, permission, schemas and docs.

``@operation(...)`` registers the Flask route and records the operation for the OpenAPI
document (identity.api.openapi). Around the view it authenticates the caller, checks the
declared permission (RBAC), validates the query string and the JSON body against pydantic
models that refuse unknown fields, and serialises the response model. A view therefore
receives a ``Caller`` and validated models, and returns a model (or None for 204).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError

from identity.api.auth import authenticate, authorize
from identity.exceptions import (
    InvalidInput,
    PreconditionFailed,
    PreconditionRequired,
    ValidationFailed,
)


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str  # Flask rule, relative to /api/v1
    summary: str
    tag: str
    permission: str | None  # None: public (the OpenAPI document, the docs page)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    etag: bool = False  # the response carries an ETag; an update needs If-Match
    errors: tuple[int, ...] = ()
    description: str = ""
    name: str = ""  # the view's name: the OpenAPI operationId
    produces: str | None = None  # a media type other than JSON the view answers with


OPERATIONS: list[Operation] = []


def operation(
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    tag: str,
    permission: str | None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    etag: bool = False,
    errors: tuple[int, ...] = (),
    produces: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        op = Operation(
            method,
            rule,
            summary,
            tag,
            permission,
            body,
            query,
            response,
            status,
            etag,
            errors,
            (view.__doc__ or "").strip(),
            view.__name__,
            produces,
        )
        OPERATIONS.append(op)

        @functools.wraps(view)
        def endpoint(**path: Any) -> Response:
            caller = authenticate()
            if permission is not None:
                authorize(caller, permission)
            kwargs: dict[str, Any] = dict(path)
            if query is not None:
                kwargs["query"] = _validate(query, request.args.to_dict(), "query")
            if body is not None:
                kwargs["body"] = _validate(body, _json_body(), "body")
            result = view(caller, **kwargs)
            return _respond(result, status, etag)

        endpoint.required_permission = permission  # type: ignore[attr-defined]
        endpoint.api_operation = op  # type: ignore[attr-defined]
        bp.add_url_rule(rule, view.__name__, endpoint, methods=[method])
        return endpoint

    return decorate


def _json_body() -> Any:
    if not request.is_json:
        raise InvalidInput("Send a JSON body (Content-Type: application/json).")
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput("The body is not valid JSON.")
    if _has_nul(data):
        # PostgreSQL cannot store NUL in text; the input guard refuses it in forms and URLs.
        raise InvalidInput("The body contains a NUL character.")
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(
            [
                {
                    "field": ".".join(str(part) for part in (where, *e["loc"])),
                    "message": e["msg"],
                    "type": e["type"],
                }
                for e in error.errors(include_url=False, include_input=False)
            ]
        ) from None


def _respond(result: Any, status: int, etag: bool) -> Response:
    if result is None:
        return Response(status=204)
    if isinstance(result, Response):
        return result
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    response = jsonify(data)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if etag:
        response.headers["ETag"] = etag_of(data)
    return response


def etag_of(data: Any) -> str:
    """A strong ETag of a representation: what the client read is what it must match."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def require_match(current: BaseModel) -> None:
    """An update applies only to the representation the client read (RFC 9110 13.1.1):
    428 without If-Match, 412 when it names another version."""
    header = request.headers.get("If-Match")
    if header is None:
        raise PreconditionRequired()
    tag = etag_of(current.model_dump(mode="json"))
    offered = [t.strip() for t in header.split(",")]
    if "*" not in offered and tag not in offered:
        raise PreconditionFailed()
