"""What one refresh-token rotation asks of the database, counted (not timed): the numbers
docs/performance.md reports, kept from growing unnoticed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.oauth.conftest import redeem, token_request

pytestmark = pytest.mark.usefixtures("fast_keys")


def rotation_statements(app: Any, flow: Any, rp: Any, client: Any, scope: str) -> list[str]:
    """The SQL statements of one refresh, as a relying party sends it (no browser cookie)."""
    from identity.extensions import db

    params, verifier = flow.authorize(rp, scope=scope)
    tokens = redeem(client, rp, params["code"], verifier).json
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:4]))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        answer = token_request(
            app.test_client(),
            rp,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answer.status_code == 200, answer.json
    # The rotation's own statements: the client may be read again too when its cache entry
    # expired meanwhile (without a change listener, as here, it is trusted one second).
    return [
        s
        for s in statements
        if not s.startswith(("PRAGMA", "BEGIN", "SELECT clients", "SELECT client_permissions"))
    ]


def test_an_offline_refresh_is_three_statements(app, flow, rp, client):
    """The token with its user, the conditional UPDATE that claims it, the new token's
    INSERT; then the commit (durable before the answer)."""
    statements = rotation_statements(app, flow, rp, client, "openid offline_access")
    assert len(statements) == 3, statements


def test_a_session_bound_refresh_adds_only_the_session_check(app, flow, rp, client):
    statements = rotation_statements(app, flow, rp, client, "openid")
    assert len(statements) <= 5, statements
    assert sum(s.startswith("SELECT login_sessions") for s in statements) == 1, statements
