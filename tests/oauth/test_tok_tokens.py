"""Token semantics (TOK-09..16, TOK-18): type and audience confusion, hash claims, subject
stability, consent, lifetime and revocation, dynamic registration, and the shared replay
cache for client assertions.

Not testable yet: the admin API (TOK-09/10 there), logout tokens (TOK-09) and DPoP
(TOK-18). Withdrawing consent on the connected-apps page (TOK-14) is tested in
test_connected_apps.py; here TOK-14 covers token lifetime and sign-out.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any

import pytest
import time_machine

from tests.conftest import csrf_token
from tests.oauth.conftest import (
    JWT_BEARER,
    ModeFlow,
    authorize_url,
    bearer,
    callback,
    callback_params,
    forge,
    pkce_pair,
    server_key,
    token_request,
    unverified,
)

pytestmark = pytest.mark.usefixtures("fast_keys")


def introspect(client: Any, rs: Any, token: str, **extra: str) -> dict[str, Any]:
    response = client.post(
        "/oauth/introspect", data={"token": token, **extra}, headers=rs.basic_auth()
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def refresh(client: Any, rp: Any, refresh_token: str) -> Any:
    return token_request(client, rp, grant_type="refresh_token", refresh_token=refresh_token)


# TOK-09 token type confusion ------------------------------------------------------------


def test_TOK_09_id_token_is_not_an_access_token(jose):
    """An ID token presented as a bearer token is refused at userinfo and inactive at
    introspection."""
    assert jose.accepted_anywhere("access", jose.id_token) == []


def test_TOK_09_access_token_is_not_an_id_token_hint(jose):
    """An access token used as id_token_hint is refused at /authorize and /logout."""
    assert jose.accepted_anywhere("id", jose.access_token) == []


def test_TOK_09_refresh_token_is_not_an_access_token(jose):
    """A refresh token sent as a bearer token is refused at userinfo."""
    assert jose.userinfo(jose.refresh_token) is False


def test_TOK_09_access_and_id_tokens_are_not_refresh_tokens(jose):
    """Access and ID tokens presented as refresh tokens get invalid_grant."""
    for token in (jose.access_token, jose.id_token):
        response = refresh(jose.browser, jose.rp, token)
        assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_TOK_09_server_tokens_are_not_client_assertions(jose):
    """Our own ID and access tokens are refused as private_key_jwt client assertions."""
    for token in (jose.id_token, jose.access_token):
        assert jose.client_assertion(token) is False


def test_TOK_09_typ_decides_the_kind_even_with_our_signature(jose):
    """Grey-box: ID-token claims signed by us under typ at+jwt, and access-token claims under
    typ JWT, are refused by the other kind's verifiers."""
    at_header, at_claims = unverified(jose.access_token)
    id_header, id_claims = unverified(jose.id_token)
    _, at_key = server_key(jose.app, at_header["alg"])
    _, id_key = server_key(jose.app, id_header["alg"])
    id_as_at = forge({**id_header, "typ": "at+jwt"}, id_claims, id_key)
    assert jose.accepted_anywhere("access", id_as_at) == []  # no jti, no client_id
    at_as_id = forge({**at_header, "typ": "JWT"}, at_claims, at_key)
    assert jose.accepted_anywhere("access", at_as_id) == []
    for typ in ("application/jwt", "JOSE", "logout+jwt"):
        token = forge({**id_header, "typ": typ}, id_claims, id_key)
        assert jose.accepted_anywhere("id", token) == [], typ


def test_TOK_09_client_credentials_token_is_refused_at_userinfo(jose):
    """A client's own service token (no user, no openid) gets no user claims at userinfo."""
    from tests.oauth.conftest import forge as build

    header, claims, key = jose.genuine("assertion")
    response = jose.browser.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": build(header, claims, key),
        },
    )
    assert response.status_code == 200
    service_token = response.json["access_token"]
    info = jose.browser.get("/userinfo", headers=bearer(service_token))
    assert info.status_code in (401, 403)
    assert "sub" not in (info.json or {})


# TOK-10 audience -----------------------------------------------------------------------


def test_TOK_10_other_clients_cannot_introspect_a_token(jose, make_client):
    """Client B learns nothing about client A's token; A and a resource server see it, with
    aud naming A."""
    other = make_client("Other", grant_types=["client_credentials"], redirect_uris=[])
    assert introspect(jose.browser, other, jose.access_token) == {"active": False}
    assert introspect(jose.browser, other, jose.refresh_token) == {"active": False}
    own = introspect(jose.browser, jose.rp, jose.access_token)
    assert own["active"] is True and own["client_id"] == jose.rp.client_id
    seen = introspect(jose.browser, jose.resource_server, jose.access_token)
    assert seen["active"] is True and seen["aud"] == jose.rp.client_id


def test_TOK_10_id_token_of_client_a_is_no_hint_for_client_b(jose, make_client):
    """An ID token issued to client A is refused as id_token_hint in client B's request."""
    other = make_client("Other")
    assert jose.authorize_hint(jose.id_token, rp=other) is False
    _, challenge = pkce_pair()
    response = jose.browser.get(
        authorize_url(other, challenge, prompt="none", id_token_hint=jose.id_token)
    )
    assert callback_params(response.headers["Location"])["error"] == "invalid_request"


def test_TOK_10_access_token_audience_is_its_client(jose):
    """Access tokens name their client as aud and client_id (RFC 9068 section 3)."""
    claims = unverified(jose.access_token)[1]
    assert claims["aud"] == jose.rp.client_id == claims["client_id"]
    assert claims["iss"] == jose.issuer


# TOK-11 hash claims ---------------------------------------------------------------------


def half_hash(value: str, alg: str) -> str:
    digest = {"ES256": hashlib.sha256, "RS256": hashlib.sha256, "EdDSA": hashlib.sha512}[alg]
    raw = digest(value.encode()).digest()
    return base64.urlsafe_b64encode(raw[: len(raw) // 2]).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_TOK_11_at_hash_matches_the_access_token(app, client, user, make_client, alg):
    """at_hash is the left half of the hash the ID token's alg implies (SHA-512 for Ed25519),
    for each signing algorithm."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, (alg,))
        db.session.commit()
        app.extensions["identity"].keys.invalidate()
    rp = make_client(id_token_signed_response_alg=alg)
    body = ModeFlow(client, "query").tokens(rp)
    header, claims = unverified(body["id_token"])
    assert header["alg"] == alg
    assert claims["at_hash"] == half_hash(body["access_token"], alg)
    assert "c_hash" not in claims


def test_TOK_11_hybrid_and_implicit_response_types_are_refused(client, user, rp, signed_in):
    """No response type returns tokens from the authorization endpoint, so no c_hash is ever
    needed."""
    for response_type in ("code id_token", "code token", "id_token", "token", "id_token token"):
        _, challenge = pkce_pair()
        response = client.get(authorize_url(rp, challenge, response_type=response_type))
        params = callback(response, rp.redirect_uri)
        assert params["error"] in ("unsupported_response_type", "unauthorized_client")
        assert not {"code", "id_token", "access_token"} & set(params)


def test_TOK_11_unknown_id_token_algs_are_refused_at_registration():
    """Registration refuses ID token algorithms the server does not implement (HS256, PS256,
    none)."""
    from identity.oauth.clients.metadata import InvalidClientMetadata, normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES

    for alg in ("HS256", "PS256", "none", "RSA1_5", ""):
        with pytest.raises(InvalidClientMetadata):
            normalize_metadata(
                {
                    "redirect_uris": ["https://rp.example.org/cb"],
                    "id_token_signed_response_alg": alg,
                },
                known_scopes=KNOWN_SCOPES,
                signing_algs=ALGORITHMS,
                default_id_token_alg="RS256",
            )


# TOK-12 subject stability ---------------------------------------------------------------


def test_TOK_12_recreated_account_gets_a_new_sub_and_no_old_grants(jose, make_user):
    """Deleting alice and registering the same email gives a new sub; her old tokens and hint
    never reach the new account."""
    from identity.extensions import db
    from identity.models.user import User
    from tests.conftest import sign_in

    old_sub = unverified(jose.id_token)[1]["sub"]
    with jose.app.app_context():
        db.session.delete(db.session.get(User, __import__("uuid").UUID(old_sub)))
        db.session.commit()
    new_id = make_user()  # same email, same password
    assert str(new_id) != old_sub
    assert jose.userinfo(jose.access_token) is False
    assert jose.introspect(jose.access_token) is False
    response = refresh(jose.browser, jose.rp, jose.refresh_token)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert sign_in(jose.browser).status_code == 303
    assert jose.authorize_hint(jose.id_token) is False  # consent was alice's, sub differs
    body = ModeFlow(jose.browser, "query").tokens(jose.rp)
    assert unverified(body["id_token"])[1]["sub"] == str(new_id)


# TOK-13 consent screen --------------------------------------------------------------------


def test_TOK_13_consent_screen_names_client_and_scopes_escaped(
    client, user, make_client, signed_in
):
    """A non-trusted client's first request shows consent with its escaped name and the
    scopes in words."""
    from identity.oauth.scopes import SCOPE_DESCRIPTIONS

    rp = make_client('<script>alert("x")</script> Evil & Co')
    _, challenge = pkce_pair()
    page = client.get(authorize_url(rp, challenge, scope="openid email"))
    assert page.status_code == 200 and b'action="/authorize/consent"' in page.data
    html = page.get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html and "Evil &amp; Co" in html
    assert SCOPE_DESCRIPTIONS["email"] in html and SCOPE_DESCRIPTIONS["openid"] in html
    assert SCOPE_DESCRIPTIONS["profile"] not in html


def test_TOK_13_only_first_party_clients_skip_consent(client, user, make_client, signed_in):
    """A first-party client gets a code without a consent page; an ordinary one does not."""
    trusted = make_client("Ours", first_party=True)
    response, _ = ModeFlow(client, "query").start(trusted)
    assert "code" in callback(response, trusted.redirect_uri)
    ordinary = make_client("Theirs", client_uri="https://rp.example.org")
    response, _ = ModeFlow(client, "query").start(ordinary)
    assert response.status_code == 200 and b'action="/authorize/consent"' in response.data


def test_TOK_13_consent_covers_only_the_scopes_granted(client, user, make_client):
    """Consent for openid profile does not silently cover a later request for email."""
    rp = make_client()
    ModeFlow(client, "query").tokens(rp, scope="openid profile")
    response, _ = ModeFlow(client, "query").start(rp, scope="openid profile email")
    assert response.status_code == 200 and b'action="/authorize/consent"' in response.data


def test_TOK_13_denied_consent_returns_access_denied(client, user, rp):
    """Deny on the consent page sends access_denied to the client and issues no code."""
    flow = ModeFlow(client, "query")
    response, _ = flow.start(rp)
    params = callback(flow.follow_to_client(response, consent=False), rp.redirect_uri)
    assert params["error"] == "access_denied" and params["state"] == "state-123"
    assert "code" not in params


# TOK-14 lifetime and the user's own revocation --------------------------------------------


def test_TOK_14_access_token_lifetime_is_the_documented_one(app, jose):
    """exp - iat of an access token is IDENTITY_ACCESS_TOKEN_LIFETIME, and expires_in says so."""
    lifetime = app.extensions["identity"].settings.access_token_lifetime
    claims = unverified(jose.access_token)[1]
    assert claims["exp"] - claims["iat"] == lifetime <= 3600
    with time_machine.travel(claims["exp"] + 60, tick=False):
        assert jose.userinfo(jose.access_token) is False


def test_TOK_14_signing_out_ends_the_sessions_tokens(jose):
    """Signing out in the account UI revokes the refresh and access tokens of that session."""
    page = jose.browser.get("/sign-out")
    response = jose.browser.post("/sign-out", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    assert jose.userinfo(jose.access_token) is False
    response = refresh(jose.browser, jose.rp, jose.refresh_token)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_TOK_14_offline_access_grants_survive_sign_out(client, user, rp):
    """By the documented policy an offline_access refresh token outlives the login session."""
    body = ModeFlow(client, "query").tokens(rp, scope="openid offline_access", prompt="consent")
    page = client.get("/sign-out")
    client.post("/sign-out", data={"csrf_token": csrf_token(page.data)})
    assert refresh(client, rp, body["refresh_token"]).status_code == 200


# TOK-15 revocation endpoint (RFC 7009) ------------------------------------------------


def revoke(client: Any, rp: Any, token: str, **extra: str) -> Any:
    return client.post("/oauth/revoke", data={"token": token, **extra}, headers=rp.basic_auth())


def test_TOK_15_revoking_the_refresh_token_kills_its_access_tokens(jose):
    """Revoking a refresh token also revokes the access tokens of the same grant."""
    assert revoke(jose.browser, jose.rp, jose.refresh_token).status_code == 200
    assert jose.accepted_anywhere("access", jose.access_token) == []
    assert refresh(jose.browser, jose.rp, jose.refresh_token).status_code == 400


def test_TOK_15_revoking_an_access_token(jose):
    """A revoked access token stops working at userinfo and introspection at once."""
    assert revoke(jose.browser, jose.rp, jose.access_token).status_code == 200
    assert jose.accepted_anywhere("access", jose.access_token) == []


def test_TOK_15_another_clients_token_is_not_revoked(jose, make_client):
    """Client B revoking client A's tokens is a no-op (or refused); the tokens still work."""
    other = make_client("Other")
    for token in (jose.access_token, jose.refresh_token):
        response = revoke(jose.browser, other, token)
        assert response.status_code in (200, 400, 401, 403)
    assert all(jose.verdicts("access", jose.access_token).values())
    assert refresh(jose.browser, jose.rp, jose.refresh_token).status_code == 200


def test_TOK_15_unknown_token_and_wrong_hint(jose):
    """An unknown token gets 200; a wrong token_type_hint still revokes the token."""
    assert revoke(jose.browser, jose.rp, "not-a-token").status_code == 200
    hint = {"token_type_hint": "access_token"}
    assert revoke(jose.browser, jose.rp, jose.refresh_token, **hint).status_code == 200
    assert refresh(jose.browser, jose.rp, jose.refresh_token).status_code == 400


def test_TOK_15_revocation_needs_client_authentication(jose):
    """Without credentials, or with a wrong secret, the confidential client's token is not
    revoked (401)."""
    anonymous = jose.browser.post(
        "/oauth/revoke", data={"token": jose.refresh_token, "client_id": jose.rp.client_id}
    )
    assert anonymous.status_code == 401
    wrong = jose.browser.post(
        "/oauth/revoke",
        data={"token": jose.refresh_token},
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{jose.rp.client_id}:wrong".encode()).decode()
        },
    )
    assert wrong.status_code == 401
    assert refresh(jose.browser, jose.rp, jose.refresh_token).status_code == 200


# TOK-16 dynamic registration ------------------------------------------------------------


DCR_TOKEN = "initial-access-token-" + "z" * 24


@pytest.fixture
def dcr_app(app_factory: Any, fast_keys: None) -> Any:
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    app = app_factory(dcr_initial_access_token=DCR_TOKEN)
    with app.app_context():
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, ("ES256", "RS256"))
        db.session.commit()
    return app


def register(client: Any, token: str | None = DCR_TOKEN, **metadata: Any) -> Any:
    body = {"client_name": "Self-registered", "redirect_uris": ["https://rp.example.org/cb"]}
    body.update(metadata)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/oauth/register", json=body, headers=headers)


def test_TOK_16_registration_needs_the_initial_access_token(dcr_app):
    """Without (or with a wrong) initial access token nothing is registered."""
    client = dcr_app.test_client()
    assert register(client, token=None).status_code == 401
    assert register(client, token="wrong-" + "x" * 40).status_code == 401


def test_TOK_16_malicious_metadata_is_refused(dcr_app):
    """javascript:, data:, plain http, fragments, wildcards and user info in URIs are refused."""
    client = dcr_app.test_client()
    for field, value in (
        ("redirect_uris", ["javascript:alert(1)"]),
        ("redirect_uris", ["data:text/html,hi"]),
        ("redirect_uris", ["http://rp.example.org/cb"]),
        ("redirect_uris", ["https://rp.example.org/cb#x"]),
        ("redirect_uris", ["https://*.example.org/cb"]),
        ("redirect_uris", ["https://user@rp.example.org/cb"]),
        ("post_logout_redirect_uris", ["javascript:alert(1)"]),
        ("logo_uri", "javascript:alert(1)"),
        ("policy_uri", "http://rp.example.org/policy"),
        ("tos_uri", "data:text/html,hi"),
        ("client_uri", "javascript:alert(1)"),
    ):
        response = register(client, **{field: value})
        assert response.status_code == 400, (field, value)
        assert response.json["error"] in ("invalid_redirect_uri", "invalid_client_metadata")


def test_TOK_16_trust_flags_cannot_be_self_assigned(dcr_app):
    """first_party, resource_server and roles in the registration body are ignored."""
    from identity.extensions import db
    from identity.models.oauth import Client

    response = register(
        dcr_app.test_client(), first_party=True, resource_server=True, roles=["admin"]
    )
    assert response.status_code == 201
    with dcr_app.app_context():
        row = db.session.query(Client).filter_by(client_id=response.json["client_id"]).one()
        assert (row.first_party, row.resource_server, row.roles) == (False, False, [])
        assert row.registered_via == "dynamic"


def test_TOK_16_self_registered_client_gets_consent_with_a_warning_once(dcr_app):
    """A dynamically registered client is never trusted before the user consented: the
    first authorization shows consent with the unreviewed warning and prompt=none gets
    consent_required; once consented, the consent is remembered like any other (ISSUE7-14:
    prompt=none and later visits go through), and prompt=consent shows the warning again."""
    from tests.conftest import PASSWORD, form_post
    from tests.oauth.conftest import RegisteredClient

    created = register(dcr_app.test_client()).json
    rp = RegisteredClient(
        created["client_id"], created["client_secret"], "https://rp.example.org/cb"
    )
    browser = dcr_app.test_client()
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.runtime import runtime

    with dcr_app.app_context():
        Accounts(db.session, runtime()).create_user("alice@example.org", PASSWORD, verified=True)
        db.session.commit()
    assert (
        form_post(
            browser, "/sign-in", {"email": "alice@example.org", "password": PASSWORD}
        ).status_code
        == 303
    )
    flow = ModeFlow(browser, "query")
    response, _ = flow.start(rp, prompt="none")
    assert callback(response, rp.redirect_uri)["error"] == "consent_required"
    response, _ = flow.start(rp)
    assert response.status_code == 200
    assert b"has not been reviewed" in response.data
    assert "code" in callback(flow.follow_to_client(response), rp.redirect_uri)
    for prompt in ("none", None):  # remembered now: no page, straight to the client
        response, _ = flow.start(rp, prompt=prompt)
        assert "code" in callback(response, rp.redirect_uri), response.data[:300]
    response, _ = flow.start(rp, prompt="consent")
    assert b"has not been reviewed" in response.data


# TOK-18 replay caches shared by every worker ----------------------------------------------


def assertion_request(client: Any, assertion: str) -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
        },
    )


def test_TOK_18_client_assertion_replay_is_refused(jose):
    """The same assertion (same jti) works once; the replay gets invalid_client."""
    header, claims, key = jose.genuine("assertion")
    assertion = forge(header, claims, key)
    assert assertion_request(jose.browser, assertion).status_code == 200
    replay = assertion_request(jose.browser, assertion)
    # RFC 6749 5.2: 400 invalid_client when the client did not use the Authorization header.
    assert replay.status_code == 400 and replay.json["error"] == "invalid_client"


def test_TOK_18_replay_is_refused_by_another_worker(jose, app_factory):
    """A second app instance on the same database (another worker or host) refuses the replay."""
    header, claims, key = jose.genuine("assertion")
    assertion = forge(header, claims, key)
    assert assertion_request(jose.browser, assertion).status_code == 200
    other_worker = app_factory().test_client()
    assert assertion_request(other_worker, assertion).json["error"] == "invalid_client"
    fresh = forge(header, jose.assertion_claims(), key)
    assert assertion_request(other_worker, fresh).status_code == 200


def test_TOK_18_concurrent_replays_let_exactly_one_through(jose, app_factory):
    """Eight simultaneous uses of one assertion over two app instances: exactly one succeeds
    and the others get 400 invalid_client, on this test run's database engine."""
    header, claims, key = jose.genuine("assertion")
    assertion = forge(header, claims, key)
    apps = [jose.app, app_factory()]
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = apps[i % 2].test_client()
        try:
            barrier.wait(timeout=30)
            statuses.append(assertion_request(client, assertion).status_code)
        except BaseException as error:  # noqa: BLE001 - any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sorted(statuses) == [200] + [400] * 7


def test_TOK_18_replay_window_outlives_the_assertion(jose):
    """The jti stays remembered until the assertion has expired, so a replay just before exp
    fails too."""
    header, _, key = jose.genuine("assertion")
    now = int(time.time())
    assertion = forge(header, jose.assertion_claims(exp=now + 300), key)
    assert assertion_request(jose.browser, assertion).status_code == 200
    with time_machine.travel(now + 290, tick=False):
        assert assertion_request(jose.browser, assertion).json["error"] == "invalid_client"


@pytest.mark.parametrize("target", ["userinfo", "id_token"])
def test_TOK_13_claims_request_beyond_consent_needs_consent(client, user, make_client, target):
    """After consenting to scope openid only, a claims request for the email is not honoured
    silently: prompt=none gets consent_required and the consent page lists the claim."""
    import json

    rp = make_client()
    flow = ModeFlow(client, "query")
    flow.tokens(rp, scope="openid")
    claims = json.dumps({target: {"email": None}})
    response, _ = flow.start(rp, scope="openid", claims=claims, prompt="none")
    assert callback(response, rp.redirect_uri)["error"] == "consent_required"
    page, _ = flow.start(rp, scope="openid", claims=claims)
    assert page.status_code == 200 and b'action="/authorize/consent"' in page.data
    assert b"email" in page.data
