"""The audit trail and the logs: one event per auth action, and never a secret in either."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from identity.audit import verify_chain
from identity.extensions import db
from identity.logs import JsonFormatter
from identity.models.audit import AuditEvent
from tests.conftest import PASSWORD, csrf_token, form_post, sign_in
from tests.functional.conftest import audit_events, cookie_value, get_user

NEW = "a brand new passphrase"
NEWER = "yet another new passphrase"
WRONG = "Wrong-Secret-Guess-123"


def full_cycle(app, client, mailbox):
    """Register, verify, sign in, change password, sign out, reset, fail once; return secrets."""
    secrets = {PASSWORD, NEW, NEWER, WRONG}
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        form_post(client, "/register", {"email": "eve@example.org", "password": PASSWORD})
        verify = mailbox.last_link("eve@example.org")
        secrets.add(verify.rsplit("/", 1)[1])
        form_post(client, verify, {})
        sign_in(client, "eve@example.org", WRONG)
        sign_in(client, "eve@example.org")
        secrets.add(cookie_value(client, "identity_session"))
        secrets.add(csrf_token(client.get("/account/password").data))
        for current in ("nope nope", PASSWORD):
            data = {"current_password": current, "new_password": NEW}
            form_post(client, "/account/password", data)
        form_post(client, "/sign-out", {})
        traveller.shift(timedelta(minutes=2))
        form_post(client, "/forgot-password", {"email": "eve@example.org"})
        form_post(client, "/forgot-password", {"email": "nobody@example.org"})
        reset = mailbox.last_link("eve@example.org")
        secrets.add(reset.rsplit("/", 1)[1])
        form_post(client, reset, {"password": NEWER})
    return secrets


def test_LOG_01_every_auth_event_is_audited(app, client, mailbox):
    """Each action of the account cycle leaves exactly the expected audit event."""
    full_cycle(app, client, mailbox)
    eve = get_user(app, "eve@example.org").id
    events = [(e["event"], e["outcome"], e["data"].get("reason")) for e in audit_events(app)]
    assert events == [
        ("user.register", "success", None),
        ("user.email_verified", "success", None),
        ("user.sign_in", "failure", "wrong_password"),
        ("user.sign_in", "success", None),
        ("user.password_changed", "failure", "wrong_password"),
        ("user.password_changed", "success", None),
        ("user.sign_out", "success", None),
        ("user.password_reset_requested", "success", None),
        ("user.password_reset_requested", "failure", "unknown_user"),
        ("user.password_reset", "success", None),
    ]
    for event in audit_events(app):
        assert event["occurred_at"].tzinfo is not None  # UTC timestamps
        assert event["ip"] == "127.0.0.1"
        assert event["request_id"]
        if event["data"].get("reason") != "unknown_user":
            assert event["subject_id"] == eve, event["event"]


def test_LOG_01_audit_event_carries_the_request_id_of_its_request(app, client, user):
    """The audit row names the request id the client saw in X-Request-ID."""
    page = client.get("/sign-in")
    data = {"csrf_token": csrf_token(page.data), "email": "alice@example.org", "password": WRONG}
    response = client.post("/sign-in", data=data, headers={"User-Agent": "probe/1.0"})
    event = audit_events(app, "user.sign_in")[-1]
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert event["user_agent"] == "probe/1.0"
    assert event["data"] == {"reason": "wrong_password"}
    assert event["personal"] == {"email": "alice@example.org"}  # outside the chain


def test_LOG_01_failed_sign_in_of_an_unknown_email_is_audited(app, client):
    """Failures for unknown emails are recorded too, without a subject."""
    sign_in(client, "ghost@example.org", WRONG)
    (event,) = audit_events(app, "user.sign_in")
    assert event["outcome"] == "failure"
    assert event["subject_id"] is None
    assert event["data"] == {"reason": "unknown_user"}
    assert event["personal"] == {"email": "ghost@example.org"}


def test_LOG_01_invitations_and_operator_created_users_are_audited(app):
    """Creating an invitation or a user by the operator path is audited."""
    from identity.accounts.management import create_invitation
    from identity.accounts.service import Accounts
    from identity.runtime import runtime

    with app.app_context():
        create_invitation(db.session, runtime(), email="inv@example.org")
        Accounts(db.session, runtime()).create_user("op@example.org", PASSWORD)
        db.session.commit()
    assert [e["event"] for e in audit_events(app)] == ["invitation.create", "user.create"]
    assert audit_events(app)[0]["data"] == {"role": None}
    assert audit_events(app)[0]["personal"] == {"email": "inv@example.org"}


def test_LOG_02_no_secret_in_audit_rows_or_logs(app, client, mailbox, caplog):
    """Passwords, link tokens, session cookies and CSRF tokens appear in no audit row or log."""
    caplog.set_level(logging.DEBUG)
    secrets = full_cycle(app, client, mailbox)
    app.extensions["identity"].mailer.flush()
    formatter = JsonFormatter()
    log_text = "\n".join(formatter.format(record) for record in caplog.records)
    assert '"msg": "request"' in log_text  # the request log was captured
    audit_text = json.dumps(audit_events(app), default=str)
    for secret in secrets:
        assert secret not in log_text, secret
        assert secret not in audit_text, secret


def test_LOG_02_request_log_names_the_route_not_the_link_token(app, client, caplog):
    """The request log line of a reset link shows the route pattern, not the token."""
    caplog.set_level(logging.INFO)
    client.get("/reset-password/some-secret-token")
    client.get("/nowhere/else")
    paths = [r.path for r in caplog.records if r.getMessage() == "request"]
    assert paths == ["/reset-password/<token>", "/nowhere/else"]


def test_LOG_02_audit_refuses_secret_keys(app):
    """audit.record() refuses data keys that look like secrets."""
    from identity import audit

    with app.app_context(), pytest.raises(ValueError, match="must not carry secrets"):
        audit.record(db.session, "user.test", password="x")


def test_LOG_03_control_characters_cannot_forge_log_lines(app, client, caplog):
    """A path with CR/LF and fake JSON stays inside one log line."""
    caplog.set_level(logging.INFO)
    forged = '/x%0D%0A{"level": "critical", "msg": "forged"}'
    client.get(forged)
    requests = [r for r in caplog.records if r.getMessage() == "request"]
    line = JsonFormatter().format(requests[-1])
    assert "\n" not in line and "\r" not in line
    assert json.loads(line)["level"] == "info"


def test_LOG_03_audited_email_is_canonical(app, client):
    """An email typed with odd case and spaces is audited in its canonical form."""
    sign_in(client, "  Ghost@Example.ORG ", WRONG)
    assert audit_events(app, "user.sign_in")[-1]["personal"]["email"] == "ghost@example.org"


def test_audit_chain_of_a_full_cycle_verifies(app, client, mailbox):
    """After a whole account cycle the hash chain is intact; editing a row breaks it."""
    full_cycle(app, client, mailbox)
    with app.app_context():
        assert verify_chain(db.session).intact
        row = db.session.get(AuditEvent, 3)
        row.data = {**row.data, "reason": "edited"}
        db.session.commit()
        assert verify_chain(db.session).seq == 3
