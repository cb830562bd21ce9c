"""Every route declares what guards it: an admin API operation its RBAC permission, any
other route its blueprint's audience (identity.rbac.access). A new route without one
fails here (AUTHZ-01)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from identity.admin.console import CONSOLE
from identity.rbac.access import AUDIENCES
from identity.rbac.permissions import Permission

# The only admin API routes open to anyone: they describe the API and reveal no data.
PUBLIC_API = {"api.openapi_json", "api.swagger_ui", "api.swagger_asset"}


def undeclared_routes(app: Flask) -> list[str]:
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        blueprint = rule.endpoint.rpartition(".")[0]
        if blueprint == "api":
            permission = getattr(view, "required_permission", "undeclared")
            if permission == "undeclared":
                missing.append(f"{rule.rule}: no permission declared")
            elif permission is None and rule.endpoint not in PUBLIC_API:
                missing.append(f"{rule.rule}: public, but not a documentation route")
            elif permission is not None and permission not in set(Permission):
                missing.append(f"{rule.rule}: unknown permission {permission}")
        elif blueprint == "admin":
            # Console pages declare theirs with identity.admin.console.page.
            permission = getattr(view, "required_permission", "undeclared")
            if permission not in {*Permission, CONSOLE}:
                missing.append(f"{rule.rule}: console page without a known permission")
        elif blueprint not in AUDIENCES:
            missing.append(f"{rule.rule}: blueprint {blueprint or '(none)'} declares no audience")
    return missing


def test_AUTHZ_01_every_route_declares_its_guard(app: Flask) -> None:
    assert undeclared_routes(app) == []
    # The API is guarded route by route: a sample of what the operations declare.
    assert app.view_functions["api.create_role"].required_permission == "roles:write"
    assert app.view_functions["api.check_one"].required_permission == "authz:check"


def test_AUTHZ_01_a_route_without_a_declaration_is_reported(app_factory: Any) -> None:
    app = app_factory()
    stray = Blueprint("stray", __name__)
    stray.add_url_rule("/stray", "stray", lambda: "")
    app.register_blueprint(stray)

    def undeclared_api_view() -> str:
        return ""

    app.add_url_rule("/api/v1/stray", "api.stray", undeclared_api_view)
    assert undeclared_routes(app) == [
        "/stray: blueprint stray declares no audience",
        "/api/v1/stray: no permission declared",
    ]
