"""Data export (GDPR Art. 15 and 20): asked for on the privacy page with the password, built
in the background, mailed as a single-use link that expires; the bundle holds every
exportable inventory field, validates against its published schema and carries the
server's signature, which `identity gdpr verify-bundle` checks."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Mailbox, csrf_token, form_post, sign_in
from tests.oauth.conftest import Flow, RegisteredClient, token_request
from tests.privacy.helpers import later, run_jobs

EMAIL = "alice@example.org"
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "export-schema.json"


def _ask(client: FlaskClient, password: str = PASSWORD) -> Any:
    page = client.get("/account/privacy")
    assert page.status_code == 200
    return client.post(
        "/account/privacy/export",
        data={"csrf_token": csrf_token(page.data), "current_password": password},
    )


def _download(client: FlaskClient, link: str) -> Any:
    """POST the download form (with the session's CSRF token, even when the link's page
    is refused)."""
    page = client.get("/account/privacy")
    if page.status_code != 200:
        return client.post(link)
    return client.post(link, data={"csrf_token": csrf_token(page.data)})


@pytest.fixture
def exported(
    app: Flask, client: FlaskClient, flow: Flow, rp: RegisteredClient, mailbox: Mailbox
) -> tuple[str, bytes]:
    """Alice, signed in to a client, asks for her data; the job runs; she downloads it."""
    params, verifier = flow.authorize(rp)
    grant = {"code": params["code"], "redirect_uri": rp.redirect_uri, "code_verifier": verifier}
    assert token_request(client, rp, grant_type="authorization_code", **grant).status_code == 200
    form_post(app.test_client(), "/forgot-password", {"email": EMAIL})  # a mail she was sent
    assert _ask(client).status_code == 303
    assert run_jobs(app) == 1
    link = mailbox.last_link(EMAIL)
    assert link.startswith("/account/privacy/download/")
    page = client.get(link)
    assert page.status_code == 200 and "Download the ZIP file" in page.data.decode()
    response = _download(client, link)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    return link, response.data


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_GDPR_01_the_export_holds_every_exportable_inventory_field(
    app: Flask, exported: tuple[str, bytes], user: uuid.UUID
) -> None:
    from identity.privacy.inventory import exported_columns, exported_tables

    members = _members(exported[1])
    assert set(members) == {
        "data.json",
        "schema.json",
        "index.html",
        "manifest.json",
        "manifest.jws",
    }
    data = json.loads(members["data.json"])
    assert data["subject"] == str(user) and data["format"] == "identity-export/1"
    assert set(data["data"]) == set(exported_tables())
    for table in exported_tables():
        for row in data["data"][table]:
            assert list(row) == exported_columns(table), table
    [account] = data["data"]["users"]
    assert account["email"] == EMAIL and account["id"] == str(user)
    assert data["data"]["consents"] and data["data"]["refresh_tokens"]
    assert data["data"]["login_sessions"]
    assert [m["subject"] for m in data["data"]["sent_mails"]] == ["Choose a new password"]
    assert {c["name"] for c in data["clients"]} == {"Relying Party"}
    events = {e["event"] for e in data["data"]["audit_events"]}
    assert {"user.sign_in", "gdpr.export_requested"} <= events
    jsonschema.validate(data, json.loads(members["schema.json"]))


def test_GDPR_02_the_export_holds_no_hash_secret_or_token(
    exported: tuple[str, bytes],
) -> None:
    text = _members(exported[1])["data.json"].decode()
    for forbidden in ("password_hash", "token_hash", "code_hash", "sealed", "argon2", "$argon"):
        assert forbidden not in text


def test_GDPR_04_the_readable_copy_is_escaped_and_runs_nothing(
    app: Flask, client: FlaskClient, flow: Flow, rp: RegisteredClient, mailbox: Mailbox
) -> None:
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        db.session.query(User).update({"name": "<script>alert(1)</script>"})
        db.session.commit()
    flow.authorize(rp)
    _ask(client)
    run_jobs(app)
    html = _members(_download(client, mailbox.last_link(EMAIL)).data)["index.html"].decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "default-src 'none'" in html  # and it loads nothing from anywhere
    assert "src=" not in html and "<link" not in html and "@import" not in html


def test_GDPR_01_the_bundle_is_signed_by_the_server(
    app: Flask, exported: tuple[str, bytes]
) -> None:
    from identity.extensions import db
    from identity.privacy import bundle

    data = exported[1]
    with app.app_context():
        ring = app.extensions["identity"].keys.ring(db.session)
        manifest = bundle.verify(data, *ring.verifying[bundle.kid_of(data)])
    assert set(manifest["files"]) == {"data.json", "schema.json", "index.html"}
    members = _members(data)
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as archive:
        for name, body in members.items():
            archive.writestr(
                name, body.replace(b"alice", b"mallory") if name == "data.json" else body
            )
    with app.app_context(), pytest.raises(bundle.BundleError, match=r"data\.json was changed"):
        bundle.verify(forged.getvalue(), *ring.verifying[bundle.kid_of(data)])


def test_GDPR_03_the_link_works_once(
    app: Flask, client: FlaskClient, exported: tuple[str, bytes]
) -> None:
    link = exported[0]
    assert client.get(link).status_code == 404
    assert _download(client, link).status_code == 404


def test_GDPR_03_only_the_person_signed_in_can_use_the_link(
    app: Flask,
    client: FlaskClient,
    flow: Flow,
    rp: RegisteredClient,
    mailbox: Mailbox,
    make_user: Any,
) -> None:
    flow.authorize(rp)
    _ask(client)
    run_jobs(app)
    link = mailbox.last_link(EMAIL)
    assert app.test_client().get(link).status_code == 302  # not signed in: to the sign-in
    make_user("eve@example.org")
    eve = app.test_client()
    assert sign_in(eve, "eve@example.org").status_code == 303
    assert eve.get(link).status_code == 404 and _download(eve, link).status_code == 404
    assert _download(client, link).status_code == 200  # still Alice's to take


def test_GDPR_03_an_expired_link_is_refused_and_purged(
    app: Flask, client: FlaskClient, flow: Flow, rp: RegisteredClient, mailbox: Mailbox
) -> None:
    from identity.extensions import db
    from identity.models.privacy import PrivacyJob
    from identity.privacy import jobs

    flow.authorize(rp)
    _ask(client)
    run_jobs(app)
    link = mailbox.last_link(EMAIL)
    with app.app_context():  # a day and a bit later
        db.session.query(PrivacyJob).update({"download_expires_at": later(-0.001)})
        db.session.commit()
    assert client.get(link).status_code == 404
    assert _download(client, link).status_code == 404
    with app.app_context():
        assert jobs.purge_expired_exports(db.session(), later(1.01)) == 1
        db.session.commit()
        assert db.session.query(PrivacyJob).count() == 0


def test_GDPR_03_asking_needs_the_password(
    app: Flask, client: FlaskClient, flow: Flow, rp: RegisteredClient, mailbox: Mailbox
) -> None:
    flow.authorize(rp)
    assert _ask(client, "not my password").status_code == 303
    assert run_jobs(app) == 0
    assert not [m for m in mailbox.to(EMAIL) if "export" in m["Subject"]]


def test_GDPR_09_an_export_job_runs_once_even_if_asked_twice(
    app: Flask, client: FlaskClient, flow: Flow, rp: RegisteredClient, mailbox: Mailbox
) -> None:
    flow.authorize(rp)
    _ask(client)
    _ask(client)
    assert run_jobs(app) == 1
    assert run_jobs(app) == 0
    assert len([m for m in mailbox.to(EMAIL) if m["Subject"] == "Your data export is ready"]) == 1


def test_GDPR_01_the_published_schema_is_current() -> None:
    """docs/export-schema.json is what the server writes in every bundle (regenerate it with
    `identity gdpr inventory --schema docs/export-schema.json`)."""
    from identity.privacy import export

    assert json.loads(SCHEMA.read_text()) == export.schema()


def test_GDPR_02_no_one_else_s_details_are_exported(
    app: Flask,
    client: FlaskClient,
    flow: Flow,
    rp: RegisteredClient,
    mailbox: Mailbox,
    user: uuid.UUID,
) -> None:
    """A record of Alice acting on someone else keeps that person's email out of her export."""
    from identity import audit
    from identity.extensions import db

    with app.app_context():
        audit.record(db.session, "invitation.create", actor_id=user, email="carol@example.org")
        db.session.info[audit.ORIGIN] = audit.Origin(ip="198.51.100.200", user_agent="ops/1")
        audit.record(db.session, "user.disabled", subject_id=user)  # an operator's request
        db.session.info.pop(audit.ORIGIN)
        db.session.commit()
    flow.authorize(rp)
    _ask(client)
    run_jobs(app)
    data = _members(_download(client, mailbox.last_link(EMAIL)).data)["data.json"].decode()
    assert "invitation.create" in data and "carol@example.org" not in data
    assert "user.disabled" in data and "198.51.100.200" not in data and "ops/1" not in data
