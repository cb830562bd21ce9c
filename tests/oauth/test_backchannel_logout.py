"""OpenID Connect Back-Channel Logout 1.0: when a user's session ends, each client that took
part and registered a backchannel_logout_uri receives a signed logout token, from a durable
queue with retries, under the SSRF rules of every outbound call (OIDC-70, OIDC-71)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import form_post
from tests.oauth.conftest import Flow, RegisteredClient, token_request, verify_with_jwks

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Listener:
    """A relying party's back-channel endpoint on loopback: records what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, list[str]]] = []
        self.status = 200
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                listener.received.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(listener.status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def bcl_client(make_client: Any, listener: Listener) -> RegisteredClient:
    return make_client(backchannel_logout_uri=listener.url)  # type: ignore[no-any-return]


def sender(app: Flask, *, allow_private: bool = True) -> Any:
    from identity.oauth.backchannel import BackchannelSender

    return BackchannelSender(app.extensions["identity"].tokens, allow_private=allow_private)


def queued(app: Flask) -> list[Any]:
    from identity.extensions import db
    from identity.models.oauth import BackchannelLogout

    with app.app_context():
        rows = db.session.query(BackchannelLogout).all()
        db.session.expunge_all()
        return rows


def deliver(app: Flask) -> int:
    from identity.extensions import db

    with app.app_context():
        return sender(app).deliver_due(db.session())  # type: ignore[no-any-return]


def signed_in_to(flow: Flow, client: FlaskClient, rp: RegisteredClient) -> dict[str, Any]:
    params, verifier = flow.authorize(rp)
    answer = token_request(
        client,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    )
    assert answer.status_code == 200
    return answer.json  # type: ignore[no-any-return]


def test_OIDC_71_sign_out_sends_a_logout_token(
    app: Flask, flow: Flow, client: FlaskClient, bcl_client: RegisteredClient, listener: Listener
) -> None:
    tokens = signed_in_to(flow, client, bcl_client)
    id_token = verify_with_jwks(client, tokens["id_token"])
    form_post(client, "/sign-out", {})
    assert len(queued(app)) == 1
    assert deliver(app) == 1
    assert queued(app) == []
    [body] = listener.received
    token = body["logout_token"][0]
    claims = verify_with_jwks(client, token)
    assert claims["aud"] == bcl_client.client_id
    assert claims["sub"] == id_token["sub"]
    assert claims["sid"] == id_token["sid"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims and claims["exp"] - claims["iat"] <= 120
    from tests.oauth.conftest import unverified

    assert unverified(token)[0]["typ"] == "logout+jwt"


def test_OIDC_71_a_failed_delivery_is_retried_then_given_up(
    app: Flask, flow: Flow, client: FlaskClient, bcl_client: RegisteredClient, listener: Listener
) -> None:
    from identity.models.base import utcnow
    from identity.oauth.backchannel import RETRIES

    signed_in_to(flow, client, bcl_client)
    form_post(client, "/sign-out", {})
    listener.status = 500
    moment = utcnow()
    for attempt, wait in enumerate(RETRIES, start=1):
        with app.app_context():
            from identity.extensions import db

            assert sender(app).deliver_due(db.session(), now=moment) == 1
        [row] = queued(app)
        assert row.attempts == attempt and "HTTP 500" in (row.last_error or "")
        moment = row.next_attempt_at
        assert row.next_attempt_at - utcnow() >= wait - timedelta(seconds=5)
    with app.app_context():
        from identity.extensions import db

        assert sender(app).deliver_due(db.session(), now=moment) == 1
    assert queued(app) == []  # given up after the last retry
    assert len(listener.received) == len(RETRIES) + 1


def test_OIDC_71_private_addresses_are_refused_unless_allowed(
    app: Flask, flow: Flow, client: FlaskClient, bcl_client: RegisteredClient, listener: Listener
) -> None:
    signed_in_to(flow, client, bcl_client)
    form_post(client, "/sign-out", {})
    with app.app_context():
        from identity.extensions import db

        sender(app, allow_private=False).deliver_due(db.session())
    [row] = queued(app)
    assert listener.received == [] and "only https" in (row.last_error or "")


def test_OIDC_71_clients_without_the_uri_or_outside_the_session_get_nothing(
    app: Flask, flow: Flow, client: FlaskClient, make_client: Any, listener: Listener
) -> None:
    plain = make_client("Plain")
    make_client("Elsewhere", backchannel_logout_uri=listener.url)  # never signed in to
    signed_in_to(flow, client, plain)
    form_post(client, "/sign-out", {})
    assert queued(app) == []


def test_OIDC_71_signing_out_everywhere_names_the_user_without_a_sid(
    app: Flask, flow: Flow, client: FlaskClient, bcl_client: RegisteredClient, listener: Listener
) -> None:
    signed_in_to(flow, client, bcl_client)
    page = client.get("/account/sessions")
    from tests.conftest import csrf_token

    client.post("/account/sessions/end-all", data={"csrf_token": csrf_token(page.data)})
    rows = queued(app)
    assert {row.sid is None for row in rows} == {True, False}  # the session, and the user
    deliver(app)
    claims = [verify_with_jwks(client, b["logout_token"][0]) for b in listener.received]
    assert any("sid" not in c for c in claims) and all(c["sub"] for c in claims)


def test_OIDC_70_discovery_and_registration(client: FlaskClient, make_client: Any) -> None:
    from identity.oauth.clients.metadata import InvalidClientMetadata

    metadata = client.get("/.well-known/openid-configuration").json
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True
    for bad in ("http://rp.example/logout", "https://rp.example/logout#x", "not a uri"):
        with pytest.raises(InvalidClientMetadata):
            make_client(backchannel_logout_uri=bad)
