"""Retention (GDPR-13): each period removes what it covers, leaves the rest, is audited
with its counts, and is off when set to 0; inactive accounts are warned, then erased."""

from __future__ import annotations

from typing import Any

from flask import Flask

from identity.models.base import utcnow
from tests.conftest import Mailbox, sign_in
from tests.functional.conftest import audit_events
from tests.privacy.helpers import AGENT, IP, later

EMAIL = "alice@example.org"


def _apply(app: Flask, days_later: float = 0) -> dict[str, int]:
    from identity.extensions import db
    from identity.privacy import retention

    with app.app_context():
        return retention.apply(db.session(), app.extensions["identity"], later(days_later))


def test_GDPR_13_origins_and_sent_mail_go_after_their_periods(
    app_factory: Any, make_user: Any
) -> None:
    app = app_factory(retention_origins_days=30, retention_sent_mail_days=90)
    from identity import audit
    from identity.extensions import db
    from identity.models.privacy import SentMail
    from identity.models.session import LoginSession

    alice = make_user(EMAIL)
    browser = app.test_client()
    browser.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=AGENT)
    assert sign_in(browser, EMAIL).status_code == 303
    with app.app_context():
        db.session.add(SentMail(user_id=alice, subject="Welcome", sent_at=utcnow()))
        db.session.commit()
    assert _apply(app, 29)["audit_origins"] == 0
    counts = _apply(app, 31)
    assert counts["audit_origins"] >= 1 and counts["session_origins"] == 1
    assert _apply(app, 32)["audit_origins"] == 0  # what was removed is not counted again
    assert counts["sent_mails"] == 0
    assert _apply(app, 91)["sent_mails"] == 1
    with app.app_context():
        [login] = db.session.query(LoginSession).all()
        assert (login.ip, login.user_agent) == (None, None) and login.user_id == alice
        assert audit.verify_chain(db.session).intact
    signed = [e for e in audit_events(app) if e["event"] == "user.sign_in"]
    assert signed and all(e["ip"] is None and e["actor_id"] == alice for e in signed)
    [first, *_] = [e for e in audit_events(app) if e["event"] == "gdpr.retention"]
    assert first["data"]["removed"]["audit_origins"] >= 1


def test_GDPR_13_off_by_default_but_for_sent_mail(app: Flask, make_user: Any) -> None:
    make_user(EMAIL)
    counts = _apply(app, 3650)
    assert set(counts) == {"exports", "sent_mails"}  # sent mail: 365 days by default
    assert audit_events(app, "gdpr.retention") == []


def test_GDPR_13_inactive_accounts_are_warned_then_erased(app_factory: Any, make_user: Any) -> None:
    app = app_factory(retention_inactive_warn_days=300, retention_inactive_erase_days=330)
    mailbox = Mailbox(app)
    from identity.extensions import db
    from identity.models.user import User

    alice = make_user(EMAIL)
    bob = make_user("bob@example.org")
    assert _apply(app, 299).get("inactive_warned") == 0
    assert _apply(app, 301)["inactive_warned"] == 2
    assert "within 30 days" in mailbox.to(EMAIL)[-1].get_content()
    assert _apply(app, 302)["inactive_warned"] == 0  # warned once
    with app.app_context():  # Bob comes back: a sign-in starts over
        user = db.session.get(User, bob)
        user.last_sign_in_at, user.inactivity_warned_at = later(310), None
        db.session.commit()
    assert _apply(app, 329)["inactive_erased"] == 0  # not yet 330 days
    assert _apply(app, 332)["inactive_erased"] == 1
    with app.app_context():
        assert db.session.get(User, alice) is None and db.session.get(User, bob) is not None
    [erased] = audit_events(app, "gdpr.erased")
    assert erased["data"]["reason"] == "inactive account (retention)"


def test_GDPR_13_erasing_without_a_warning_first_is_refused_by_the_settings(
    tmp_path: Any,
) -> None:
    import pytest
    from pydantic import ValidationError

    from tests.conftest import test_settings

    with pytest.raises(ValidationError, match="owners are warned before erasure"):
        test_settings(tmp_path, "sqlite://", retention_inactive_erase_days=30)


def test_GDPR_13_an_inactive_last_administrator_stays_and_the_rest_goes_on(
    app_factory: Any, make_user: Any
) -> None:
    app = app_factory(retention_inactive_warn_days=10, retention_inactive_erase_days=20)
    from identity.extensions import db
    from identity.models.user import User

    root = make_user("root@example.org", roles=("admin",))
    alice = make_user(EMAIL)
    _apply(app, 11)
    assert _apply(app, 22)["inactive_erased"] == 1
    with app.app_context():
        assert db.session.get(User, root) is not None and db.session.get(User, alice) is None
