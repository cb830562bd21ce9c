"""The OpenAPI document: served without credentials, built from the declared operations
(the same models that validate requests), and complete about security and errors."""

from __future__ import annotations

from importlib.metadata import version

from flask import Flask

from identity.api.openapi import document
from identity.api.operations import OPERATIONS


def test_the_served_document_is_the_built_one(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json == document(version("identity"))
    assert response.json["openapi"] == "3.1.0"


def test_every_operation_is_documented_with_its_permission_and_errors() -> None:
    doc = document("test")
    assert len(OPERATIONS) == sum(len(methods) for methods in doc["paths"].values())
    for op in OPERATIONS:
        path = "/api/v1" + op.rule.replace("<uuid:", "{").replace("<", "{").replace(">", "}")
        entry = doc["paths"][path][op.method.lower()]
        assert entry["x-permission"] == op.permission
        assert op.permission in entry["description"]
        for status in ("401", "403", "404"):
            content = entry["responses"][status]["content"]
            assert list(content) == ["application/problem+json"]
        if op.body is not None:
            assert "422" in entry["responses"]
            schema_ref = entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            name = schema_ref.rsplit("/", 1)[1]
            # Unknown fields are refused, and the document says so.
            assert doc["components"]["schemas"][name].get("additionalProperties") is False
        if op.method == "PATCH":
            assert {"412", "428"} <= set(entry["responses"])
            assert any(p["name"] == "If-Match" for p in entry["parameters"])


def test_swagger_ui_assets_come_from_the_package(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert b"/api/v1/docs/assets/swagger-ui-bundle.js" in page.data
    assert b"cdn" not in page.data.lower()
    asset = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.data) > 100_000
    assert client.get("/api/v1/docs/assets/../openapi.py").status_code == 404
    assert client.get("/api/v1/docs/assets/index.html").status_code == 404
