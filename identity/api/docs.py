"""The OpenAPI document and the Swagger UI page (its assets from the swagger-ui-py
package, served here: no CDN, and nothing inline, so the page keeps our CSP)."""

from __future__ import annotations

from importlib.metadata import version

from flask import Response, abort, jsonify, render_template, send_file

from identity.api import bp
from identity.api.openapi import SWAGGER_ASSETS, document

ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document (public: it describes, it reveals no data)."""
    response = jsonify(document(version("identity")))
    response.headers["Cache-Control"] = "no-cache"
    return response


openapi_json.required_permission = None  # type: ignore[attr-defined]


@bp.get("/docs")
def swagger_ui() -> str:
    return render_template("api/docs.html")


swagger_ui.required_permission = None  # type: ignore[attr-defined]


@bp.get("/docs/assets/<name>")
def swagger_asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    path = SWAGGER_ASSETS / name
    response = send_file(path, max_age=86400)  # type: ignore[arg-type]
    return response


swagger_asset.required_permission = None  # type: ignore[attr-defined]
