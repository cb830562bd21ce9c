"""The admin API's GDPR operations: export a user's data (the signed ZIP) and erase a
user with a reason, at once or after the cooling-off period."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from flask import Flask

from tests.api.conftest import Api
from tests.conftest import Mailbox, sign_in
from tests.functional.conftest import audit_events
from tests.privacy.helpers import later, run_jobs


def test_GDPR_01_operators_export_a_user_through_the_api(
    app: Flask, admin_api: Api, make_user: Any
) -> None:
    alice = make_user("alice@example.org")
    answer = admin_api.get(f"/users/{alice}/export")
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
    assert answer.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        data = json.loads(archive.read("data.json"))
    assert data["subject"] == str(alice)
    [event] = audit_events(app, "gdpr.export_by_operator")
    assert event["subject_id"] == alice and event["data"]["actor_client"]


def test_GDPR_05_operators_erase_with_a_reason_now_or_later(
    app: Flask, admin_api: Api, make_user: Any, mailbox: Mailbox
) -> None:
    alice = make_user("alice@example.org")
    bob = make_user("bob@example.org")
    now = admin_api.post(f"/users/{alice}/erasure", json={"reason": "request 1", "now": True})
    assert now.status_code == 200 and now.json["erased"] and len(now.json["receipt_id"]) == 32
    assert admin_api.get(f"/users/{alice}").status_code == 404
    later_one = admin_api.post(f"/users/{bob}/erasure", json={"reason": "request 2"})
    assert later_one.status_code == 200 and later_one.json["erase_on"]
    assert later_one.json["erased"] is False and later_one.json["receipt_id"] is None
    notice = mailbox.to("bob@example.org")[-1].get_content()
    assert "as its operators decided" in notice and "/account/delete/cancel/" not in notice
    assert sign_in(app.test_client(), "bob@example.org").status_code == 200  # disabled
    assert run_jobs(app, later(8)) == 1
    assert admin_api.get(f"/users/{bob}").status_code == 404
    reasons = sorted(e["data"]["reason"] for e in audit_events(app, "gdpr.erased"))
    assert reasons == ["request 1", "request 2"]
    refused = admin_api.post(f"/users/{bob}/erasure", json={"reason": ""})
    assert refused.status_code in (404, 422)
