"""REL-02 / LOG-05: when the database or Redis is unreachable the server fails closed."""

from __future__ import annotations

import pytest

from tests.conftest import make_app


@pytest.fixture
def app_without_database(tmp_path):
    return make_app(tmp_path, "postgresql://postgres@127.0.0.1:1/unreachable")


def test_REL_02_readiness_reports_database_down_while_liveness_stays_up(app_without_database):
    """/readyz answers 503 when the database is unreachable; /healthz still answers 200."""
    client = app_without_database.test_client()
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_REL_02_token_endpoint_fails_closed_with_503_json(app_without_database):
    """A token request during a database outage gets a JSON 503, never tokens or a 500."""
    client = app_without_database.test_client()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
    )
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert "psycopg" not in response.get_data(as_text=True)


def test_LOG_05_redis_outage_on_rate_limited_page_is_503(tmp_path, database_url):
    """With the rate-limit store down a limited POST answers 503 instead of skipping the limit."""
    app = make_app(
        tmp_path,
        database_url,
        ratelimit_enabled=True,
        ratelimit_storage_url="redis://127.0.0.1:1/0",
    )
    app.config["WTF_CSRF_ENABLED"] = False
    response = app.test_client().post(
        "/sign-in", data={"email": "a@example.org", "password": "x" * 12}
    )
    assert response.status_code == 503


def test_REL_09_keys_under_another_secret_give_a_generic_500(app_factory, tmp_path):
    """Signing keys that do not decrypt with the configured secret answer a generic 500
    that does not describe the key problem (the log does)."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    first = app_factory()
    with first.app_context():
        ensure_keys(db.session, first.extensions["identity"].keys.cipher, ("ES256",))
        db.session.commit()
    other = app_factory(secret_key="another-secret-key-" + "y" * 32)
    response = other.test_client().get("/jwks.json")
    assert response.status_code == 500
    assert "decrypt" not in response.get_data(as_text=True)
    assert response.json["error"] == "server_error"
