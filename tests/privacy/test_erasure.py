"""Erasure (GDPR Art. 17): self-service deletion with its cooling-off period, operator
erasure, what erasure leaves behind (nothing personal), the clients told with a signed
Security Event Token, and the ledger that repeats erasures after a restore."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from identity.logs import JsonFormatter
from tests.conftest import PASSWORD, Mailbox, csrf_token, form_post, sign_in
from tests.functional.conftest import audit_events
from tests.oauth.conftest import Flow, RegisteredClient, token_request, unverified, verify_with_jwks
from tests.privacy.helpers import (
    AGENT,
    IP,
    EventListener,
    later,
    run_jobs,
    traces,
    user_id_of,
)

NAME = "Alice Liddell"
EMAIL = "alice@example.org"
PURGED = "https://schemas.openid.net/secevent/risc/event-type/account-purged"


@pytest.fixture
def listener() -> Iterator[EventListener]:
    server = EventListener()
    yield server
    server.close()


@pytest.fixture
def app(app_factory: Any) -> Flask:
    return app_factory(security_events_allow_private=True)  # type: ignore[no-any-return]


@pytest.fixture
def user(make_user: Any) -> uuid.UUID:
    return make_user(EMAIL, name=NAME)  # type: ignore[no-any-return]


@pytest.fixture
def browser(client: FlaskClient) -> FlaskClient:
    client.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=AGENT)
    return client


def _delete_form(client: FlaskClient, password: str) -> Any:
    page = client.get("/account/privacy")
    assert page.status_code == 200
    return client.post(
        "/account/delete",
        data={"csrf_token": csrf_token(page.data), "current_password": password},
    )


def _give_everything(app: Flask, user_id: uuid.UUID) -> None:
    """Second factors, a group and a role, an invitation used, as a full account has."""
    from identity import audit
    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.mfa import RecoveryCode, TotpCredential, WebAuthnCredential
    from identity.models.rbac import Group, Role, group_members
    from identity.models.user import Invitation
    from identity.rbac import service as rbac

    with app.app_context():
        session = db.session
        session.add(TotpCredential(user_id=user_id, sealed_secret="v1.x", confirmed_at=utcnow()))
        session.add(RecoveryCode(user_id=user_id, code_hash="c" * 64))
        session.add(
            WebAuthnCredential(
                user_id=user_id,
                credential_id="cred-of-alice",
                public_key=b"cose",
                name="Alice's laptop",
                transports=["internal"],
            )
        )
        group, role = Group(name="readers"), Role(name="editor")
        session.add_all([group, role])
        session.flush()
        session.execute(group_members.insert().values(group_id=group.id, user_id=user_id))
        rbac.assign(session, role, rbac.Principal("user", user_id))  # audited
        # Records that name the address without naming the account: an invitation, and a
        # failed sign-in while the address was throttled.
        audit.record(session, "invitation.create", email=EMAIL)
        audit.record(session, "user.sign_in", outcome="failure", reason="throttled", email=EMAIL)
        session.add(
            Invitation(
                token_hash="i" * 64,
                email=EMAIL,
                expires_at=utcnow(),
                used_at=utcnow(),
                used_by_id=user_id,
            )
        )
        session.commit()


def _full_account(
    app: Flask, browser: FlaskClient, flow: Flow, rp: RegisteredClient, user_id: uuid.UUID
) -> dict[str, Any]:
    """Alice signs in to a client (consent, grants, a login session from IP with AGENT)
    and has every kind of factor and membership."""
    params, verifier = flow.authorize(rp)
    tokens = token_request(
        browser,
        rp,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=verifier,
    ).json
    assert tokens["refresh_token"]
    _give_everything(app, user_id)  # after the sign-in: it would ask for a second factor
    return tokens  # type: ignore[no-any-return]


def _erase_now(app: Flask, email: str = EMAIL) -> str:
    from identity.extensions import db
    from identity.models.user import User
    from identity.privacy.erasure import Erasure

    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one()
        receipt = Erasure(db.session, app.extensions["identity"]).erase(user, reason="ticket 12")
        db.session.commit()
        return receipt.receipt_id


def _deliver_events(app: Flask) -> int:
    from identity.extensions import db
    from identity.oauth.backchannel import BackchannelSender
    from identity.oauth.security_events import SecurityEventSender

    rt = app.extensions["identity"]
    with app.app_context():
        sent = SecurityEventSender(rt.tokens, allow_private=True).deliver_due(db.session())
        BackchannelSender(rt.tokens, allow_private=True).deliver_due(db.session())
        return sent  # type: ignore[no-any-return]


def test_GDPR_15_nothing_personal_remains_after_erasure(
    app: Flask,
    browser: FlaskClient,
    flow: Flow,
    make_client: Any,
    user: uuid.UUID,
    mailbox: Mailbox,
    listener: EventListener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An account with sessions, consents, grants, factors, roles, groups, an invitation,
    mail and audit records is erased: no text or JSON column of any table holds its email,
    name, id or address any more (except pseudonyms), neither do the logs, and the audit
    chain verifies."""
    from identity import audit
    from identity.extensions import db

    caplog.set_level(logging.DEBUG)
    rp = make_client(security_event_uri=listener.url)
    _full_account(app, browser, flow, rp, user)
    needles = [EMAIL, NAME, str(user), user.hex, IP, AGENT, "Alice's laptop", "cred-of-alice"]
    assert traces(app, needles)  # the scan finds them while the account exists

    receipt = _erase_now(app)
    assert _deliver_events(app) == 1  # queued notices hold the sub until delivered

    assert traces(app, needles) == []
    log_text = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert EMAIL not in log_text and NAME not in log_text and IP not in log_text
    with app.app_context():
        assert audit.verify_chain(db.session).intact
    [erased] = [e for e in audit_events(app) if e["event"] == "gdpr.erased"]
    assert erased["data"]["receipt"] == receipt and erased["subject_id"] is None
    [last] = mailbox.to(EMAIL)[-1:]
    assert receipt in last.get_content() and last["Subject"] == "Your account has been deleted"


def test_GDPR_05_erasure_ends_sessions_and_every_token(
    app: Flask, browser: FlaskClient, flow: Flow, rp: RegisteredClient, user: uuid.UUID
) -> None:
    tokens = _full_account(app, browser, flow, rp, user)
    _erase_now(app)
    assert browser.get("/account").status_code == 302  # signed out
    answer = token_request(
        browser, rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"
    looked = browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert looked.status_code == 401


def test_GDPR_12_each_client_used_is_told_with_a_signed_security_event_token(
    app: Flask,
    browser: FlaskClient,
    flow: Flow,
    make_client: Any,
    user: uuid.UUID,
    listener: EventListener,
) -> None:
    """RFC 8417 SET with the RISC account-purged event, POSTed as application/secevent+jwt
    (RFC 8935) to the client's security_event_uri; its signature verifies with the JWKS."""
    rp = make_client(security_event_uri=listener.url)
    silent = make_client("No events")  # used, but registered nowhere to be told
    _full_account(app, browser, flow, rp, user)
    flow.authorize(silent)
    _erase_now(app)
    assert _deliver_events(app) == 1
    [(content_type, token)] = listener.received
    assert content_type == "application/secevent+jwt"
    claims = verify_with_jwks(browser, token)
    assert unverified(token)[0]["typ"] == "secevent+jwt"
    issuer = app.extensions["identity"].settings.issuer
    assert claims["aud"] == rp.client_id and claims["iss"] == issuer
    assert claims["events"] == {
        PURGED: {"subject": {"format": "iss_sub", "iss": issuer, "sub": str(user)}}
    }
    assert "sub" not in claims and "exp" not in claims and claims["jti"]


def test_GDPR_06_self_service_deletion_needs_the_password_and_waits(
    app: Flask, browser: FlaskClient, user: uuid.UUID, mailbox: Mailbox
) -> None:
    """A wrong password changes nothing; the right one disables the account at once,
    signs the browser out and schedules the erasure after the cooling-off period (7 days
    by default), which runs from the job queue then, and not before."""
    assert sign_in(browser, EMAIL).status_code == 303
    refused = _delete_form(browser, "not my password")
    assert refused.status_code == 303 and browser.get("/account").status_code == 200
    response = _delete_form(browser, PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/sign-in"
    assert browser.get("/account").status_code == 302
    assert "will be erased" in mailbox.to(EMAIL)[-1].get_content()
    assert run_jobs(app) == 0  # the cooling-off period has not ended
    assert run_jobs(app, later(6.9)) == 0
    assert run_jobs(app, later(7.01)) == 1
    with app.app_context():
        from identity.extensions import db
        from identity.models.user import User

        assert db.session.get(User, user) is None
    assert audit_events(app, "gdpr.erased")[0]["data"]["requested"] == "self"


def test_GDPR_14_signing_in_again_cancels_the_deletion(
    app: Flask, browser: FlaskClient, user: uuid.UUID
) -> None:
    assert sign_in(browser, EMAIL).status_code == 303
    _delete_form(browser, PASSWORD)
    assert sign_in(browser, EMAIL, "wrong password").status_code == 200  # still disabled
    assert sign_in(browser, EMAIL).status_code == 303
    assert browser.get("/account").status_code == 200
    assert run_jobs(app, later(8)) == 0
    assert user_id_of(app, EMAIL) == user
    assert [e["event"] for e in audit_events(app)][-2] == "gdpr.erasure_cancelled"


def test_GDPR_14_the_mailed_link_cancels_the_deletion_once(
    app: Flask, browser: FlaskClient, user: uuid.UUID, mailbox: Mailbox
) -> None:
    assert sign_in(browser, EMAIL).status_code == 303
    _delete_form(browser, PASSWORD)
    link = mailbox.last_link(EMAIL)
    other = app.test_client()
    page = other.get(link)
    assert page.status_code == 200 and "Keep my account" in page.data.decode()
    assert run_jobs(app) == 0 and user_id_of(app, EMAIL) == user  # a GET decides nothing
    kept = form_post(other, link, {})
    assert kept.status_code == 303
    assert sign_in(app.test_client(), EMAIL).status_code == 303
    again = form_post(app.test_client(), link, {})
    assert again.status_code == 303
    assert run_jobs(app, later(8)) == 0 and user_id_of(app, EMAIL) == user


def test_GDPR_09_an_erasure_job_whose_worker_died_runs_again(
    app: Flask, browser: FlaskClient, user: uuid.UUID
) -> None:
    """A job leased by a worker that died is taken again when its lease lapses, and runs
    once: the second run finds nothing to do."""
    from sqlalchemy import update

    from identity.extensions import db
    from identity.models.privacy import PrivacyJob

    assert sign_in(browser, EMAIL).status_code == 303
    _delete_form(browser, PASSWORD)
    moment = later(7.5)
    with app.app_context():  # a worker leased it, then died
        db.session.execute(update(PrivacyJob).values(claimed_until=moment + timedelta(minutes=1)))
        db.session.commit()
    assert run_jobs(app, moment) == 0  # still leased
    assert run_jobs(app, moment + timedelta(minutes=2)) == 1
    assert run_jobs(app, moment + timedelta(minutes=3)) == 0
    with app.app_context():
        assert db.session.query(PrivacyJob).count() == 0


def test_GDPR_10_reapplying_erasures_after_a_restore(app: Flask, user: uuid.UUID) -> None:
    """The ledger outlives a restore of an older backup: the account it names is erased
    again, and the ledger itself holds no personal data."""
    from identity.extensions import db
    from identity.models.privacy import ErasureRecord
    from identity.models.user import User
    from identity.privacy.erasure import Erasure

    receipt = _erase_now(app)
    with app.app_context():  # the backup from before the erasure comes back
        db.session.add(User(id=user, email=EMAIL, name=NAME, password_hash="x"))
        db.session.commit()
        [row] = db.session.query(ErasureRecord).all()
        assert str(user) not in row.subject_hash and row.receipt_id == receipt
        assert Erasure(db.session, app.extensions["identity"]).reapply() == [receipt]
        db.session.commit()
        assert db.session.get(User, user) is None
        assert Erasure(db.session, app.extensions["identity"]).reapply() == []


def test_AUTHZ_08_the_last_administrator_cannot_be_erased(app: Flask, make_user: Any) -> None:
    from identity.exceptions import Conflict

    make_user("root@example.org", roles=("admin",))
    with pytest.raises(Conflict):
        _erase_now(app, "root@example.org")


def test_GDPR_12_security_event_uri_follows_the_logout_uri_rules() -> None:
    from identity.oauth.clients.metadata import InvalidClientMetadata, check_backchannel_logout_uri

    name = "security_event_uri"
    assert check_backchannel_logout_uri("https://rp.example/events", name)
    assert check_backchannel_logout_uri("http://127.0.0.1:9000/events", name)
    for bad in ("http://rp.example/events", "https://rp.example/e#x", "events", ""):
        with pytest.raises(InvalidClientMetadata, match=name):
            check_backchannel_logout_uri(bad, name)


def test_AUTHZ_08_the_last_administrator_cannot_ask_to_be_deleted(
    app: Flask, make_user: Any
) -> None:
    make_user("root@example.org", roles=("admin",))
    browser = app.test_client()
    assert sign_in(browser, "root@example.org").status_code == 303
    refused = _delete_form(browser, PASSWORD)
    assert refused.status_code == 303 and refused.headers["Location"] == "/account/privacy"
    assert "would leave no active administrator" in browser.get("/account/privacy").data.decode()
    assert browser.get("/account").status_code == 200  # still signed in, still enabled


def test_GDPR_14_a_second_factor_holder_cancels_by_link_not_by_password(
    app: Flask, browser: FlaskClient, user: uuid.UUID
) -> None:
    """The password alone does not prove someone with a second factor: signing in does not
    bring the account back (the mailed link does)."""
    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.mfa import TotpCredential

    assert sign_in(browser, EMAIL).status_code == 303
    _delete_form(browser, PASSWORD)
    with app.app_context():
        db.session.add(TotpCredential(user_id=user, sealed_secret="v1.x", confirmed_at=utcnow()))
        db.session.commit()
    assert sign_in(app.test_client(), EMAIL).status_code == 200  # still disabled
    assert run_jobs(app, later(8)) == 1  # and erased in time


def test_GDPR_14_an_account_an_operator_disabled_meanwhile_stays_disabled(
    app: Flask, browser: FlaskClient, user: uuid.UUID, mailbox: Mailbox
) -> None:
    from identity.accounts.management import set_disabled
    from identity.extensions import db
    from identity.models.user import User

    assert sign_in(browser, EMAIL).status_code == 303
    _delete_form(browser, PASSWORD)
    link = mailbox.last_link(EMAIL)
    with app.app_context():
        set_disabled(db.session, db.session.get(User, user), True, access_token_lifetime=600)
        db.session.commit()
    assert sign_in(app.test_client(), EMAIL).status_code == 200  # no way back by signing in
    form_post(app.test_client(), link, {})  # the link calls the erasure off, no more
    assert sign_in(app.test_client(), EMAIL).status_code == 200
    assert run_jobs(app, later(8)) == 0 and user_id_of(app, EMAIL) == user


def test_AUTHZ_08_an_administrator_who_changes_their_mind_is_enabled_again(
    app: Flask, make_user: Any, mailbox: Mailbox
) -> None:
    make_user("root@example.org", roles=("admin",))
    make_user("second@example.org", roles=("admin",))
    browser = app.test_client()
    assert sign_in(browser, "second@example.org").status_code == 303
    assert _delete_form(browser, PASSWORD).headers["Location"] == "/sign-in"
    assert sign_in(app.test_client(), "second@example.org").status_code == 303
