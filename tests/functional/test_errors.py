"""Error pages: every error is a generic page (or JSON) with a request id, never a trace."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from identity.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from identity.extensions import db

SECRET_TEXT = "secret detail: password=hunter2 at /srv/identity/app.py line 42"


@pytest.fixture
def broken_app(app_factory):
    """An app with routes that fail in the ways real code can."""
    app = app_factory()

    def boom():
        raise RuntimeError(SECRET_TEXT)

    def bad_sql():
        db.session.execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    def domain(kind):
        errors = {
            "invalid": InvalidInput("That value is not valid."),
            "forbidden": Forbidden(),
            "missing": NotFound(),
            "conflict": Conflict(),
            "down": ServiceUnavailable(),
        }
        raise errors[kind]

    app.add_url_rule("/boom", view_func=boom)
    app.add_url_rule("/bad-sql", view_func=bad_sql)
    app.add_url_rule("/domain/<kind>", view_func=domain)
    return app


def test_WEB_09_unexpected_error_is_a_generic_500_with_request_id(broken_app, caplog):
    """An exception in a view shows a generic page with a reference, not its text."""
    client = broken_app.test_client()
    with caplog.at_level(logging.ERROR, logger="identity.errors"):
        response = client.get("/boom", headers={"X-Request-ID": "req-0123456789"})
    assert response.status_code == 500
    html = response.data.decode()
    assert "Something went wrong" in html
    assert "An unexpected error occurred." in html
    assert "Reference: <code>req-0123456789</code>" in html
    for leak in ("hunter2", "RuntimeError", "Traceback", "app.py", "secret detail"):
        assert leak not in html
    assert response.headers["X-Request-ID"] == "req-0123456789"
    # LOG-06: logged once with the trace and the request id, for the operator.
    records = [r for r in caplog.records if r.name == "identity.errors"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert getattr(records[0], "event", None) == "error.unhandled"


def test_WEB_09_unexpected_error_as_json(broken_app):
    """A JSON client gets a generic JSON 500 with the request id."""
    response = broken_app.test_client().get("/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "server_error"
    assert body["error_description"] == "Something went wrong."
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "hunter2" not in response.data.decode()


def test_WEB_09_database_error_is_generic_and_the_app_keeps_serving(broken_app, caplog):
    """A failing SQL statement answers 500 without SQL text; the next request works."""
    client = broken_app.test_client()
    with caplog.at_level(logging.CRITICAL):
        response = client.get("/bad-sql")
    assert response.status_code == 500
    html = response.data.decode()
    assert "no_such_table" not in html and "SELECT" not in html
    assert client.get("/sign-in").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "text"),
    [
        ("invalid", 400, "That value is not valid."),
        ("forbidden", 403, "You are not allowed to do that."),
        ("missing", 404, "There is nothing at this address."),
        ("conflict", 409, "That conflicts with existing data."),
        ("down", 503, "The service is temporarily unavailable."),
    ],
)
def test_domain_errors_show_their_safe_message(broken_app, kind, status, text):
    """IdentityError subclasses answer with their own status and safe message."""
    response = broken_app.test_client().get(f"/domain/{kind}")
    assert response.status_code == status
    assert text in response.data.decode()
    assert response.mimetype == "text/html"


def test_domain_errors_as_json(broken_app):
    """A JSON client gets the error code and message."""
    response = broken_app.test_client().get(
        "/domain/conflict", headers={"Accept": "application/json"}
    )
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"


def test_404_page(client):
    """An unknown address shows the not-found page with a request reference."""
    response = client.get("/nowhere")
    assert response.status_code == 404
    html = response.data.decode()
    assert "Page not found" in html
    assert response.headers["X-Request-ID"] in html
    assert 'href="/"' in html


def test_404_as_json(client):
    """A JSON client gets a JSON 404."""
    response = client.get("/nowhere", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "not_found"


def test_405_page_keeps_the_allow_header(client):
    """A wrong method shows the 405 page and the Allow header."""
    response = client.delete("/account")
    assert response.status_code == 405
    assert "Method not allowed" in response.data.decode()
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/oauth/token"),
        ("delete", "/userinfo"),
        ("put", "/oauth/register"),
        ("post", "/healthz"),
    ],
)
def test_machine_endpoints_answer_errors_in_json_whatever_the_accept_header(client, method, path):
    """Programs call the OAuth, UserInfo, registration and health endpoints: a wrong method
    there (no route matched, so no blueprint either) is a JSON error with the Allow header
    and the request id, never cached, even for a browser's Accept header."""
    response = getattr(client, method)(path, headers={"Accept": "text/html"})
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "method_not_allowed"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Allow"]
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_of_machine_blueprints_are_not_confused_with_pages(client):
    """RP-initiated logout is a page for people: its errors are pages."""
    response = client.get("/logout?id_token_hint=not-a-token", headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert response.mimetype == "text/html"


def test_400_page_for_a_missing_csrf_token(client):
    """A form POST without a token shows the bad-request page."""
    response = client.post("/sign-in", data={"email": "a@example.org"})
    assert response.status_code == 400
    html = response.data.decode()
    assert "Bad request" in html
    assert "The CSRF token is missing." in html


def test_LOG_request_rejected_by_csrf_is_logged_with_its_id_and_duration(client, caplog):
    """CSRF rejects in a before-request hook; the request id and timer run before it, so
    the answer still carries its id and the log line its id and a real duration."""
    caplog.set_level(logging.INFO, logger="identity.request")
    response = client.post(
        "/sign-in", data={"email": "a@example.org"}, headers={"X-Request-ID": "req-csrf-0001"}
    )
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "req-csrf-0001"
    assert "req-csrf-0001" in response.data.decode()  # shown on the error page
    [line] = [r for r in caplog.records if r.name == "identity.request"]
    assert line.status == 400 and line.path == "/sign-in"
    assert line.duration_ms > 0  # timed: without the timer it came out as -0.0


def test_WEB_09_invalid_utf8_and_malformed_json_are_client_errors(client):
    """Garbage bytes and broken JSON bodies answer 4xx, never 500."""
    response = client.post(
        "/sign-in",
        data=b"email=\xff\xfe&password=\xc3\x28",
        content_type="application/x-www-form-urlencoded",
    )
    assert 400 <= response.status_code < 500
    response = client.post("/sign-in", data=b"{not json", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/json"


def test_error_pages_carry_security_headers(client):
    """Error answers carry the same protective headers as pages."""
    response = client.get("/nowhere")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
