"""The console's operations pages under the Flask test client: live sessions and ending
one, the audit log (filters, a record, the export, verifying the chain), signing keys
(rotate and retire, with a fresh proof) and the settings in effect, secrets masked; and
what each built-in role may see and do there."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import select, update

from identity.admin import audit_pages, session_pages
from identity.admin.settings_pages import MASK, mask_url, shown_value
from tests.admin.conftest import ADMIN, REAUTH, submit
from tests.conftest import PASSWORD, csrf_token, sign_in
from tests.functional.conftest import audit_events


def user_id_of(app: Flask, email: str) -> uuid.UUID:
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        return db.session.execute(select(User.id).where(User.email == email)).scalar_one()


def sessions_of(app: Flask, email: str) -> list[str]:
    from identity.extensions import db
    from identity.models.session import LoginSession

    user_id = user_id_of(app, email)
    with app.app_context():
        query = select(LoginSession.sid).where(LoginSession.user_id == user_id)
        return list(db.session.execute(query).scalars())


def signed_in_user(app: Flask, make_user: Any, email: str = "bob@example.org") -> FlaskClient:
    make_user(email)
    browser = app.test_client()
    assert sign_in(browser, email).status_code == 303
    return browser


@pytest.fixture
def key(app: Flask) -> str:
    """One ES256 signing key, as `identity init` would create."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():
        rt = app.extensions["identity"]
        (row,) = ensure_keys(db.session, rt.keys.cipher, ("ES256",))
        db.session.commit()
        rt.keys.invalidate()
        return row.kid


def key_rows(app: Flask) -> list[dict[str, Any]]:
    from identity.extensions import db
    from identity.models.oauth import SigningKey

    with app.app_context():
        rows = db.session.execute(select(SigningKey).order_by(SigningKey.created_at)).scalars()
        return [
            {"kid": k.kid, "retired_at": k.retired_at, "unpublish_at": k.unpublish_at} for k in rows
        ]


# Sessions -------------------------------------------------------------------------------


def test_sessions_lists_everyones_and_filters_by_email(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    signed_in_user(app, make_user)
    page = admin.get("/admin/sessions")
    assert page.status_code == 200
    assert "bob@example.org" in page.text and ADMIN in page.text
    assert "this session" in page.text  # the operator's own is marked
    rows = page.text.split("<tbody>", 1)[1]
    assert rows.index("bob@example.org") < rows.index(ADMIN)  # newest first
    assert '<th scope="col">Browser and device</th>' in page.text
    only_bob = admin.get("/admin/sessions?email=BOB@example.org").text
    assert "bob@example.org" in only_bob and ADMIN not in only_bob.split("<tbody>", 1)[1]
    assert "No user has that email address." in admin.get("/admin/sessions?email=x@y.org").text
    assert admin.get("/admin/sessions?email=not-an-email").status_code == 400
    assert admin.get("/admin/sessions?cursor=%%%").status_code == 400


def test_sessions_page_by_page(
    app: Flask, admin: FlaskClient, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_pages, "PAGE", 1)
    signed_in_user(app, make_user)
    first = admin.get("/admin/sessions")
    assert "bob@example.org" in first.text and 'rel="next"' in first.text
    next_url = first.text.split('<p class="pager"><a href="', 1)[1].split('"', 1)[0]
    second = admin.get(next_url.replace("&amp;", "&"))
    assert second.status_code == 200
    assert ADMIN in second.text and "bob@example.org" not in second.text
    assert 'rel="next"' not in second.text


def test_ending_a_session_signs_that_browser_out_and_is_audited(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    bob = signed_in_user(app, make_user)
    (sid,) = sessions_of(app, "bob@example.org")
    bob_id = user_id_of(app, "bob@example.org")
    action = f"/admin/sessions/{bob_id}/{sid}/end"
    answer = submit(admin, "/admin/sessions", action, email="bob@example.org")
    assert answer.status_code == 303
    assert answer.location.endswith("/admin/sessions?email=bob@example.org")
    assert "The session was ended" in admin.get(answer.location).text
    assert sessions_of(app, "bob@example.org") == []
    assert bob.get("/account").status_code == 302  # signed out
    (event,) = audit_events(app, "session.revoked")
    assert event["actor_id"] == user_id_of(app, ADMIN)
    assert event["subject_id"] == bob_id and event["data"]["sessions"] == [sid]
    # Ended already: a refusal the operator reads, nothing else changes.
    again = submit(admin, "/admin/sessions", action)
    assert "The session was not ended" in admin.get(again.location).text


def test_a_user_manager_cannot_end_an_administrators_session(
    app: Flask, admin: FlaskClient, operator: Any
) -> None:
    manager = operator("user-manager")
    (sid,) = sessions_of(app, ADMIN)
    action = f"/admin/sessions/{user_id_of(app, ADMIN)}/{sid}/end"
    answer = submit(manager, "/admin/sessions", action)
    assert "permissions you do not hold" in manager.get(answer.location).text
    assert sessions_of(app, ADMIN) == [sid]
    assert audit_events(app, "session.revoked") == []


def test_AUTHZ_07_the_auditor_sees_sessions_but_cannot_end_one(
    app: Flask, operator: Any, make_user: Any
) -> None:
    auditor = operator("auditor")
    signed_in_user(app, make_user)
    page = auditor.get("/admin/sessions")
    assert page.status_code == 200 and "bob@example.org" in page.text
    assert "End session" not in page.text
    (sid,) = sessions_of(app, "bob@example.org")
    action = f"/admin/sessions/{user_id_of(app, 'bob@example.org')}/{sid}/end"
    token = csrf_token(auditor.get("/admin/audit").data)  # a page with a form
    assert auditor.post(action, data={"csrf_token": token}).status_code == 403
    assert sessions_of(app, "bob@example.org") == [sid]


def test_ending_a_session_without_csrf_is_refused(
    app: Flask, admin: FlaskClient, make_user: Any
) -> None:
    signed_in_user(app, make_user)
    (sid,) = sessions_of(app, "bob@example.org")
    action = f"/admin/sessions/{user_id_of(app, 'bob@example.org')}/{sid}/end"
    assert admin.post(action).status_code == 400
    assert sessions_of(app, "bob@example.org") == [sid]


# Audit log ------------------------------------------------------------------------------


def test_audit_log_filters(app: Flask, admin: FlaskClient, make_user: Any) -> None:
    make_user("bob@example.org")
    sign_in(app.test_client(), "bob@example.org", "not the password")
    everything = admin.get("/admin/audit")
    assert everything.status_code == 200
    assert "<code>user.sign_in</code>" in everything.text
    failures = admin.get("/admin/audit?event=user.sign_in&outcome=failure").text
    assert failures.count("<code>user.sign_in</code>") == 1
    assert 'class="badge bad">failure' in failures
    assert 'class="badge good">success' not in failures
    by_bob = admin.get("/admin/audit?subject=bob@example.org").text
    assert "bob@example.org" in by_bob
    assert "<code>user.sign_in</code>" in admin.get(f"/admin/audit?actor={ADMIN}").text
    today = audit_events(app)[-1]["occurred_at"].date().isoformat()
    assert (
        "<code>user.sign_in</code>" in admin.get(f"/admin/audit?since={today}&until={today}").text
    )
    assert "No audit records match" in admin.get("/admin/audit?until=2001-01-01").text
    assert "No user has the email" in admin.get("/admin/audit?actor=nobody@example.org").text
    assert admin.get("/admin/audit?since=yesterday").status_code == 400
    assert admin.get("/admin/audit?outcome=maybe").status_code == 400
    assert admin.get("/admin/audit?cursor=bad").status_code == 400


def test_audit_log_page_by_page(
    app: Flask, admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_pages, "PAGE", 1)
    newest = audit_events(app)[-1]["seq"]
    first = admin.get("/admin/audit")
    assert f'/admin/audit/{newest}"' in first.text
    next_url = first.text.split('<p class="pager"><a href="', 1)[1].split('"', 1)[0]
    second = admin.get(next_url.replace("&amp;", "&")).text
    assert f'/admin/audit/{newest - 1}"' in second and f'/admin/audit/{newest}"' not in second


def test_an_audit_record_shows_everything_it_holds(app: Flask, admin: FlaskClient) -> None:
    event = audit_events(app, "user.sign_in")[-1]
    page = admin.get(f"/admin/audit/{event['seq']}")
    assert page.status_code == 200
    text = page.text
    for name in ("personal_digest", "prev_hash", "hash", "actor_id", "salt", "user_agent"):
        assert f"<dt>{name}</dt>" in text
    assert f"({ADMIN})" in text
    assert admin.get("/admin/audit/999999").status_code == 404


def test_audit_export_downloads_the_filtered_records_as_json_lines(
    app: Flask, admin: FlaskClient
) -> None:
    answer = admin.get("/admin/audit/export?event=user.sign_in")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    assert answer.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["event"] for r in lines] == ["user.sign_in"]
    assert set(lines[0]) >= {"seq", "hash", "prev_hash", "details", "personal_digest"}
    [exported] = audit_events(app, "audit.exported")  # who took a copy is on record
    assert exported["data"]["filters"] == ["event"] and exported["actor_id"] is not None
    everything = admin.get("/admin/audit/export").text.splitlines()
    assert len(everything) == len(audit_events(app))
    bad = admin.get("/admin/audit/export?since=soon")
    assert bad.status_code == 303 and "since=soon" in bad.location


def test_verifying_the_chain_is_recorded_and_shown(app: Flask, admin: FlaskClient) -> None:
    answer = submit(admin, "/admin/audit", "/admin/audit/verify")
    assert answer.status_code == 303 and answer.location.endswith("/admin/audit#verify")
    page = admin.get(answer.location).text
    assert "The audit chain is intact" in page
    (event,) = audit_events(app, "audit.verified")
    assert event["outcome"] == "success" and event["actor_id"] == user_id_of(app, ADMIN)
    assert event["data"]["checked"] == event["seq"] - 1
    assert '<strong class="ok">intact</strong>' in admin.get("/admin/").text  # the dashboard


def test_a_broken_chain_is_reported_and_recorded_as_a_failure(
    app: Flask, admin: FlaskClient
) -> None:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        db.session.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(event="edited"))
        db.session.commit()
    answer = submit(admin, "/admin/audit", "/admin/audit/verify")
    assert "The audit chain is broken at seq 1" in admin.get(answer.location).text
    (event,) = audit_events(app, "audit.verified")
    assert event["outcome"] == "failure"
    assert event["data"]["seq"] == 1 and event["data"]["problem"] == "hash_mismatch"
    assert '<strong class="bad">broken</strong>' in admin.get("/admin/").text


def test_audit_pages_need_audit_read(app: Flask, operator: Any) -> None:
    manager = operator("user-manager")
    for path in ("/admin/audit", "/admin/audit/1", "/admin/audit/export"):
        assert manager.get(path).status_code == 403
    shown = manager.get("/admin/sessions")
    answer = manager.post("/admin/audit/verify", data={"csrf_token": csrf_token(shown.data)})
    assert answer.status_code == 403
    assert audit_events(app, "audit.verified") == []
    nav = shown.text.split('aria-label="Admin console"', 1)[1].split("</nav>", 1)[0]
    assert "Sessions" in nav and "Audit log" not in nav
    auditor = operator("auditor")
    assert auditor.get("/admin/audit").status_code == 200
    assert auditor.post("/admin/audit/verify").status_code == 400  # no CSRF token
    assert audit_events(app, "audit.verified") == []


# Signing keys ---------------------------------------------------------------------------


def test_keys_are_listed_with_their_states(app: Flask, admin: FlaskClient, key: str) -> None:
    page = admin.get("/admin/keys")
    assert page.status_code == 200
    assert f"<code>{key}</code>" in page.text and "ES256" in page.text
    assert 'class="badge good">active' in page.text
    assert "private" not in page.text.lower().replace("private, ", "")
    assert "Rotate the signing keys" in page.text and f"Retire {key}" in page.text


def test_AUTHZ_13_rotating_asks_for_a_fresh_proof(app: Flask, admin: FlaskClient, key: str) -> None:
    wrong = submit(admin, "/admin/keys", "/admin/keys/rotate", reauth="not it")
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert len(key_rows(app)) == 1 and audit_events(app, "key.rotate") == []
    answer = submit(admin, "/admin/keys", "/admin/keys/rotate", **REAUTH)
    assert answer.status_code == 303
    assert "New signing key published" in admin.get(answer.location).text
    old, new = key_rows(app)
    assert old["kid"] == key and old["retired_at"] is not None and new["retired_at"] is None
    (event,) = audit_events(app, "key.rotate")
    assert event["actor_id"] == user_id_of(app, ADMIN) and event["data"]["replaces"] == [key]


def test_AUTHZ_13_retiring_asks_for_a_fresh_proof_and_the_typed_key_id(
    app: Flask, admin: FlaskClient, key: str
) -> None:
    submit(admin, "/admin/keys", "/admin/keys/rotate", **REAUTH)
    action = f"/admin/keys/{key}/retire"
    typo = submit(admin, "/admin/keys", action, confirm=key[:-1], **REAUTH)
    assert typo.status_code == 400 and f"Type {key} exactly" in typo.text
    wrong = submit(admin, "/admin/keys", action, confirm=key, reauth="not it")
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert audit_events(app, "key.retire") == []
    before = key_rows(app)[0]["unpublish_at"]
    answer = submit(admin, "/admin/keys", action, confirm=key, immediately="yes", **REAUTH)
    assert answer.status_code == 303
    assert f"Key {key} retired" in admin.get(answer.location).text
    assert key_rows(app)[0]["unpublish_at"] < before  # removed from the JWKS now
    (event,) = audit_events(app, "key.retire")
    assert event["data"]["kid"] == key and event["data"]["immediately"] is True
    assert event["actor_id"] == user_id_of(app, ADMIN)


def test_the_only_signing_key_cannot_be_retired(app: Flask, admin: FlaskClient, key: str) -> None:
    answer = submit(admin, "/admin/keys", f"/admin/keys/{key}/retire", confirm=key, **REAUTH)
    assert answer.status_code == 303
    assert "The key was not retired" in admin.get(answer.location).text
    assert key_rows(app)[0]["retired_at"] is None
    assert audit_events(app, "key.retire") == []


def test_AUTHZ_07_key_actions_need_keys_write(app: Flask, operator: Any, key: str) -> None:
    auditor = operator("auditor")
    page = auditor.get("/admin/keys")
    assert page.status_code == 200 and f"<code>{key}</code>" in page.text
    assert "Rotate the signing keys" not in page.text and "Retire " not in page.text
    token = {"csrf_token": csrf_token(auditor.get("/admin/audit").data), **REAUTH}
    assert auditor.post("/admin/keys/rotate", data=token).status_code == 403
    retire = {**token, "confirm": key}
    assert auditor.post(f"/admin/keys/{key}/retire", data=retire).status_code == 403
    assert len(key_rows(app)) == 1 and audit_events(app, "key.rotate") == []
    assert operator("user-manager").get("/admin/keys").status_code == 403


def test_WEB_01_key_actions_without_csrf_are_refused(
    app: Flask, admin: FlaskClient, key: str
) -> None:
    assert admin.post("/admin/keys/rotate", data=REAUTH).status_code == 400
    retire = {"confirm": key, **REAUTH}
    assert admin.post(f"/admin/keys/{key}/retire", data=retire).status_code == 400
    assert len(key_rows(app)) == 1 and key_rows(app)[0]["retired_at"] is None


# Settings -------------------------------------------------------------------------------


def test_every_console_user_reads_the_settings_without_secrets(
    app_factory: Any, make_user: Any
) -> None:
    secrets = {
        "smtp_password": "smtp-hunter2-secret",
        "dcr_initial_access_token": "dcr-initial-token-value-" + "z" * 16,
    }
    app = app_factory(admin_mfa_required=False, smtp_username="mailer", **secrets)
    secret_key = app.extensions["identity"].settings.secret_key.get_secret_value()
    roles = ("admin", "user-manager", "auditor")
    for role in roles:  # all before the first request: the app caches the roles it read
        make_user(f"{role}@example.org", roles=(role,))
    make_user("plain@example.org")
    for role in roles:
        client = app.test_client()
        sign_in(client, f"{role}@example.org")
        page = client.get("/admin/settings")
        assert page.status_code == 200, role
        text = page.text
        assert "<code>IDENTITY_ISSUER</code>" in text
        assert "Public base URL of the server." in text  # the description
        assert "<code>mailer</code>" in text
        assert text.count(MASK) >= 3
        for value in (*secrets.values(), secret_key, PASSWORD):
            assert value not in text
    plain = app.test_client()
    sign_in(plain, "plain@example.org")
    assert plain.get("/admin/settings").status_code == 403


def test_secrets_in_values_are_masked() -> None:
    assert (
        mask_url("postgresql://app:s3cret@db:5432/identity")
        == f"postgresql://app:{MASK}@db:5432/identity"
    )
    assert mask_url("redis://:pw@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"
    assert (
        mask_url("redis://cache:6379/0?password=pw&db=1")
        == f"redis://cache:6379/0?password={MASK}&db=1"
    )
    assert mask_url("sqlite:////var/lib/identity.db") == "sqlite:////var/lib/identity.db"
    assert mask_url("postgresql://identity@db/identity") == "postgresql://identity@db/identity"
    assert mask_url("smtp.example.org") == "smtp.example.org"
    assert shown_value("secret_key", SecretStr("x" * 40)) == (MASK, True)
    assert shown_value("smtp_password", None) == ("(none)", False)
    assert shown_value("some_api_key", "abc") == (MASK, True)
    assert shown_value("access_token_lifetime", 600) == ("600", False)
    assert shown_value("database_url", "postgresql://u:p@h/d") == (
        f"postgresql://u:{MASK}@h/d",
        True,
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # SQLAlchemy takes these passwords unescaped; urlsplit would end the host early.
        ("postgresql+psycopg://identity:s3cr/et@db/identity", "identity:{}@db/identity"),
        ("postgresql+psycopg://identity:p?ss@db/identity", "identity:{}@db/identity"),
        ("postgresql+psycopg://identity:p#ss@db/identity", "identity:{}@db/identity"),
        ("postgresql+psycopg://identity:p@ss@db:5432/identity", "identity:{}@db:5432/identity"),
        ("redis://:pa/ss@host:6379/0", ":{}@host:6379/0"),
        ("redis://:p?w@cache:6379/0?password=pw#x", ":{}@cache:6379/0?password={}#x"),
    ],
)
def test_a_password_holding_url_delimiters_is_masked_whole(url: str, shown: str) -> None:
    scheme = url.split("://", 1)[0]
    assert mask_url(url) == f"{scheme}://" + shown.replace("{}", MASK)
    assert shown_value("database_url", url) == (mask_url(url), True)


def test_a_user_without_a_role_opens_none_of_these_pages(operator: Any) -> None:
    plain = operator()
    for path in ("/admin/sessions", "/admin/audit", "/admin/keys", "/admin/settings"):
        assert plain.get(path).status_code == 403


# Input that cannot be used ----------------------------------------------------------------


def _cursor(*key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_audit_dates_at_the_ends_of_the_calendar_are_refused_or_used(
    admin: FlaskClient, name: str, day: str
) -> None:
    shown = admin.get(f"/admin/audit?{name}={day}")
    assert shown.status_code in (200, 400)
    if shown.status_code == 400:
        assert f"The {name} date" in shown.text
    exported = admin.get(f"/admin/audit/export?{name}={day}")
    assert exported.status_code in (200, 303)


def test_an_audit_date_with_no_day_after_is_a_clear_error(admin: FlaskClient) -> None:
    shown = admin.get("/admin/audit?until=9999-12-31")
    assert shown.status_code == 400 and "The until date is too late." in shown.text
    exported = admin.get("/admin/audit/export?until=9999-12-31")
    assert exported.status_code == 303 and "until=9999-12-31" in exported.location
    assert "The until date is too late." in admin.get(exported.location).text


@pytest.mark.parametrize("seq", ["0", "9223372036854775807", "9223372036854775808", "9" * 20])
def test_an_audit_record_out_of_range_is_not_found(admin: FlaskClient, seq: str) -> None:
    assert admin.get(f"/admin/audit/{seq}").status_code == 404


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-01-01T00:00:00"]
)
def test_a_sessions_cursor_at_the_ends_of_time_is_a_bad_cursor(
    admin: FlaskClient, moment: str
) -> None:
    answer = admin.get(f"/admin/sessions?cursor={_cursor(moment, 'x')}")
    assert answer.status_code == 400
    assert "The cursor is not valid" in answer.text


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/admin/users?cursor=", 1),
        ("/admin/clients?cursor=", 1),
        ("/admin/groups?cursor=", 1),
        ("/admin/groups/staff?members=", 1),
        ("/admin/sessions?cursor=", 2),
    ],
)
def test_a_cursor_holding_a_nul_character_is_a_bad_cursor(
    app: Flask, admin: FlaskClient, path: str, parts: int
) -> None:
    # The request's own NUL guard sees only the base64; the character is inside the JSON.
    from identity.extensions import db
    from identity.models.rbac import Group

    with app.app_context():
        db.session.add(Group(name="staff"))
        db.session.commit()
    key = ["2024-01-01T00:00:00+00:00", "x\u0000y"][-parts:]
    answer = admin.get(path + _cursor(*key))
    assert answer.status_code == 400
    assert "cursor is not valid" in answer.text
