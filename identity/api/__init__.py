"""The admin REST API, /api/v1: JSON, RFC 9457 errors, OpenAPI 3.1 at /api/v1/openapi.json.

One module per resource declares its operations with ``identity.api.operations.operation``
(route, permission, schemas); ``docs`` serves the OpenAPI document and Swagger UI.
"""

from __future__ import annotations

from flask import Blueprint

from identity.errors import problem_facing

bp = problem_facing(Blueprint("api", __name__, url_prefix="/api/v1"))

# The resource modules register their operations on bp when imported.
from identity.api import (  # noqa: E402
    audit,
    authz,
    clients,
    docs,
    factors,
    groups,
    keys,
    privacy,
    roles,
    sessions,
    users,
)

__all__ = [
    "audit",
    "authz",
    "bp",
    "clients",
    "docs",
    "factors",
    "groups",
    "keys",
    "privacy",
    "roles",
    "sessions",
    "users",
]
