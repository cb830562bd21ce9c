"""Issue 7: the rate limits of the protocol endpoints (stored /authorize requests per address,
PAR and device authorization per client and per address) and of sign-in (failures only).

Flask-Limiter is one object per process whose on/off switch is set by the app built last,
so each test builds exactly one app (no ``app``-based fixtures next to it).
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.conftest import PASSWORD, csrf_token, sign_in
from tests.functional.conftest import add_user, cookie_value
from tests.oauth.conftest import REDIRECT_URI, RegisteredClient, authorize_url, pkce_pair

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
# Each endpoint limited per client and per address, with a body that is otherwise valid.
CLIENT_ENDPOINTS = {
    "par": (
        "/oauth/par",
        {
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
        201,
    ),
    "device_authorization": ("/oauth/device_authorization", {"scope": "openid"}, 200),
}


def add_client(app, name: str = "Relying Party") -> RegisteredClient:
    """A confidential client of any app (the ``make_client`` fixture is bound to ``app``)."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES

    raw = {
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", DEVICE_CODE],
        "scope": "openid profile email",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    with app.app_context():
        meta = normalize_metadata(
            raw, known_scopes=KNOWN_SCOPES, signing_algs=ALGORITHMS, default_id_token_alg="RS256"
        )
        created = client_service.create_client(db.session, name=name, meta=meta)
        db.session.commit()
        return RegisteredClient(created.client.client_id, created.client_secret, REDIRECT_URI)


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, (response.status_code, response.data[:300])
    assert int(response.headers["Retry-After"]) > 0


# 5. /authorize, PAR and device authorization ------------------------------------------------


def test_ISSUE7_05_authorize_limits_stored_requests_per_address(app_factory):
    """With ratelimit_authorize 3/minute the fourth anonymous request that would be stored
    for sign-in answers 429; requests answered at once (an unknown client) do not count."""
    app = app_factory(ratelimit_enabled=True, ratelimit_authorize="3/minute")
    rp = add_client(app)
    browser = app.test_client()
    unknown = "/authorize?" + urlencode(
        {"response_type": "code", "client_id": "no-such-client", "redirect_uri": REDIRECT_URI}
    )

    def stored() -> int:
        response = browser.get(authorize_url(rp, pkce_pair()[1]))
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/sign-in?")
        return response.status_code

    assert [browser.get(unknown).status_code for _ in range(4)] == [400] * 4
    codes = []
    for _ in range(2):
        codes.append(stored())
        codes.append(browser.get(unknown).status_code)
    codes.append(stored())
    assert codes == [302, 400, 302, 400, 302]
    assert_rate_limited(browser.get(authorize_url(rp, pkce_pair()[1])))


@pytest.mark.parametrize("endpoint", list(CLIENT_ENDPOINTS))
def test_ISSUE7_05_pushed_and_device_requests_are_limited_per_client(app_factory, endpoint):
    """Beyond ratelimit_client one client's requests answer 429; another client from the same
    address still gets through."""
    app = app_factory(
        ratelimit_enabled=True, ratelimit_client="2/minute", ratelimit_client_ip="100/minute"
    )
    first, second = add_client(app, "First"), add_client(app, "Second")
    path, data, ok = CLIENT_ENDPOINTS[endpoint]
    api = app.test_client()
    codes = [api.post(path, data=data, headers=first.basic_auth()).status_code for _ in range(2)]
    assert codes == [ok, ok]
    assert_rate_limited(api.post(path, data=data, headers=first.basic_auth()))
    assert api.post(path, data=data, headers=second.basic_auth()).status_code == ok


@pytest.mark.parametrize("endpoint", list(CLIENT_ENDPOINTS))
def test_ISSUE7_05_pushed_and_device_requests_are_limited_per_address(app_factory, endpoint):
    """Beyond ratelimit_client_ip one address answers 429 whichever client it names; another
    address still gets through."""
    app = app_factory(
        ratelimit_enabled=True,
        ratelimit_client="100/minute",
        ratelimit_client_ip="3/minute",
        trusted_proxies=1,
    )
    clients = [add_client(app, f"Client {n}") for n in range(4)]
    path, data, ok = CLIENT_ENDPOINTS[endpoint]
    api = app.test_client()
    here = {"X-Forwarded-For": "198.51.100.1"}
    codes = [
        api.post(path, data=data, headers={**rp.basic_auth(), **here}).status_code
        for rp in clients[:3]
    ]
    assert codes == [ok, ok, ok]
    assert_rate_limited(api.post(path, data=data, headers={**clients[3].basic_auth(), **here}))
    elsewhere = {"X-Forwarded-For": "198.51.100.2"}
    response = api.post(path, data=data, headers={**clients[3].basic_auth(), **elsewhere})
    assert response.status_code == ok


def test_ISSUE7_05_device_authorization_is_limited_per_address_by_default(app_factory):
    """With the default settings (ratelimit_client_ip 60/minute) the 61st device
    authorization request from one address in a minute answers 429."""
    app = app_factory(ratelimit_enabled=True)
    rp = add_client(app)
    path, data, ok = CLIENT_ENDPOINTS["device_authorization"]
    api = app.test_client()
    codes = {api.post(path, data=data, headers=rp.basic_auth()).status_code for _ in range(60)}
    assert codes == {ok}
    assert_rate_limited(api.post(path, data=data, headers=rp.basic_auth()))


# 11. Sign-in counts failures only -----------------------------------------------------------


def test_ISSUE7_11_sign_in_limit_per_address_counts_failures_only(app_factory):
    """With ratelimit_sign_in 3/minute five successful sign-ins from one address all work,
    while after three failed attempts the fourth POST answers 429."""
    app = app_factory(ratelimit_enabled=True, ratelimit_sign_in="3/minute")
    add_user(app)
    for _ in range(5):
        browser = app.test_client()
        assert sign_in(browser).status_code == 303
        assert cookie_value(browser, "identity_session")
    browser = app.test_client()
    wrong = {"email": "alice@example.org", "password": "not the password"}
    for _ in range(3):
        token = csrf_token(browser.get("/sign-in").data)
        assert browser.post("/sign-in", data={"csrf_token": token, **wrong}).status_code == 200
    response = sign_in(browser, password=PASSWORD)
    assert_rate_limited(response)
    assert cookie_value(browser, "identity_session") is None
