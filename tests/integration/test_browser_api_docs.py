"""The admin API's Swagger UI in real Chromium: it renders from identity's own assets
under the Content-Security-Policy, and an operator can authorize with a token and try an
operation (AUTHZ-01: the call carries the bearer token and is decided by RBAC)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import Harness, Server
from tests.integration.test_browser import browser, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(module_identity_factory: Harness) -> Server:
    return module_identity_factory.server()


@pytest.fixture
def admin_token(server: Server) -> Iterator[str]:
    created = json.loads(
        server.instance.cli(
            "clients",
            "create",
            "--name",
            "docs",
            "--grant-type",
            "client_credentials",
            "--role",
            "auditor",
            "--json",
        ).stdout
    )
    response = requests.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "identity:admin"},
        auth=(created["client_id"], created["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    yield response.json()["access_token"]


def test_swagger_ui_renders_and_tries_an_operation(page: Any, admin_token: str) -> None:  # noqa: F811
    page.goto("/api/v1/docs")
    page.get_by_text("identity admin API").first.wait_for()
    requests_seen: list[str] = []
    page.on("request", lambda r: requests_seen.append(r.url))

    page.locator("button.btn.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator(".auth-container input").first.fill(admin_token)
    dialog.locator("button.btn.modal-btn.auth.authorize").click()
    dialog.locator("button.btn-done").click()

    operation = page.locator("#operations-Roles-list_roles")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert "admin" in operation.locator(".live-responses-table .microlight").first.inner_text()
    assert all(url.startswith(page.url.split("/api/")[0]) for url in requests_seen)  # no CDN
