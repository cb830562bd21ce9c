"""The OpenAPI 3.1 document of /api/v1, built from the declared operations and their
pydantic models (the same models that validate requests), and the Swagger UI page,
whose assets come from the swagger-ui-py package (no CDN)."""

from __future__ import annotations

import re
from http import HTTPStatus
from importlib import resources
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from identity.api.operations import OPERATIONS, Operation

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_PARAM_SCHEMA = {"uuid": {"type": "string", "format": "uuid"}, "int": {"type": "integer"}}
SWAGGER_ASSETS = resources.files("swagger_ui") / "static"


class Problem(BaseModel):
    """RFC 9457 problem details, as every API error answers."""

    type: str
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, str]] | None = None
    missing: str | None = None


def document(version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {Problem}
    for op in OPERATIONS:
        models.update(m for m in (op.body, op.query, op.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, schema = models_json_schema(
        [(m, mode) for m in ordered for mode in ("validation", "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = "/api/v1" + _PARAM.sub(r"{\2}", op.rule)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "identity admin API",
            "version": version,
            "description": (
                "Manage users, clients, roles, groups, sessions, audit events and signing"
                " keys. Authenticate with a bearer access token carrying the scope"
                " identity:admin; what you may do follows your RBAC permissions."
                " Errors are RFC 9457 problem details."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [],
        "responses": {},
    }
    if op.description:
        out["description"] = op.description
    if op.permission:
        out["description"] = (
            out.get("description", "") + f"\n\nNeeds the permission `{op.permission}`."
        ).strip()
        out["x-permission"] = op.permission
    else:
        out["security"] = []
    out["parameters"] = _parameters(op)
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    out["responses"] = _responses(op, refs)
    return out


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PARAM_SCHEMA.get(kind, {"type": "string"}),
        }
        for kind, name in _PARAM.findall(op.rule)
    ]
    if op.query is not None:
        properties = op.query.model_json_schema()["properties"]
        for name, info in op.query.model_fields.items():
            params.append(
                {
                    "name": info.alias or name,
                    "in": "query",
                    "required": info.is_required(),
                    "schema": properties[info.alias or name],
                    **({"description": info.description} if info.description else {}),
                }
            )
    if op.etag and op.method in ("PATCH", "PUT"):
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "The ETag of the representation you read.",
            }
        )
    return params


def _responses(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    elif op.produces is not None:
        success["content"] = {op.produces: {"schema": {"contentMediaType": op.produces}}}
    if op.etag and op.method in ("GET", "PATCH", "PUT", "POST"):
        success["headers"] = {"ETag": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    problem = {"application/problem+json": {"schema": refs[(Problem, "serialization")]}}
    statuses = {400, 401, 403, 404, 405, 406, 415, 429, 500, 503, *op.errors}
    if op.body is not None or op.query is not None:
        statuses.add(422)
    if op.etag and op.method in ("PATCH", "PUT"):
        statuses.update({412, 428})
    if op.permission is None:
        statuses -= {401, 403}
    for status in sorted(statuses):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": problem}
    return responses
