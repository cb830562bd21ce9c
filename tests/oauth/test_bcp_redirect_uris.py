"""RFC 9700 redirect URI handling: exact matching, loopback ports, safe registration, and
no open redirects (BCP-01 .. BCP-07)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from identity.models.oauth import Client
from tests.oauth.bcp_support import (
    EVIL,
    codes_minted,
    consent_form,
    count,
    install_keys,
    issuer,
    not_redirected_to_client,
    query,
    signed_in_browser,
)
from tests.oauth.conftest import authorize_url, pkce_pair

REGISTERED = "https://rp.test/cb"
DCR_TOKEN = "initial-access-token-" + "x" * 32


def authorize(browser, client_id, redirect_uri, **params):
    _, challenge = pkce_pair()
    query_params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    return browser.get(
        "/authorize?" + urlencode({k: v for k, v in query_params.items() if v is not None})
    )


def assert_error_page(app, response):
    assert response.status_code == 400, (response.status_code, response.headers)
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    # Our authorization error page, or the 400 page for input no view may see (a NUL).
    assert b"Cannot continue" in response.data or b"The request contains a NUL" in response.data
    assert codes_minted(app) == 0


# BCP-01 ---------------------------------------------------------------------------------

NEAR_MISSES = [
    "https://rp.test/cb/",
    "https://rp.test/cb/../x",
    "https://rp.test/x/../cb",
    "https://rp.test/./cb",
    "https://rp.test//cb",
    "https://rp.test/cbx",
    "https://rp.test/cb;x",
    "https://rp.test/cb?x=1",
    "https://rp.test/cb?",
    "https://rp.test/cb#",
    "https://rp.test/cb#x",
    "https://rp.test/CB",
    "https://RP.test/cb",
    "HTTPS://rp.test/cb",
    "https://rp.test:443/cb",
    "https://rp.test:8443/cb",
    "https://rp.test./cb",
    "http://rp.test/cb",
    "https://rp.test.evil/cb",
    "https://rp.test@evil/cb",
    "https://user:pw@rp.test/cb",
    "https://evil/cb?https://rp.test/cb",
    "https://evil/https://rp.test/cb",
    "https://rp.test/%2e%2e/cb",
    "https://rp.test/cb/%2e%2e/x",
    "https://rp.test/%252e%252e/cb",
    "https://rp.test/%63b",
    "https://rp.test/cb%2f..%2fx",
    "https://rp.test\\@evil/cb",
    "https://rp.test\\cb",
    "https://rp.test/cb\\..\\x",
    "https://rp.t\u0435st/cb",  # a Cyrillic homoglyph of "e"
    "https://xn--rp-test/cb",
    "//rp.test/cb",
    "rp.test/cb",
    " https://rp.test/cb",
    "https://rp.test/cb ",
    "https://rp.test/cb%20",
    "https://rp.test/cb\x00",
    "https://rp.test/cb\r\nX: y",
]


@pytest.mark.parametrize("candidate", NEAR_MISSES)
def test_BCP_01_near_miss_redirect_uris_are_refused(app, make_client, user, candidate):
    """Redirect URIs are compared as exact strings: every near miss gets our error page."""
    rp = make_client(redirect_uris=[REGISTERED], first_party=True)
    browser = signed_in_browser(app)
    assert_error_page(app, authorize(browser, rp.client_id, candidate))


def test_BCP_01_exact_redirect_uri_is_accepted(app, make_client, user):
    """The control case: the registered string itself gets a code."""
    rp = make_client(redirect_uris=[REGISTERED], first_party=True)
    response = authorize(signed_in_browser(app), rp.client_id, REGISTERED)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(REGISTERED + "?")
    assert codes_minted(app) == 1


def test_BCP_01_near_misses_are_refused_in_a_post_request_too(app, make_client, user):
    """A POSTed authorization request is matched as strictly as a GET one."""
    rp = make_client(redirect_uris=[REGISTERED], first_party=True)
    browser = signed_in_browser(app)
    _, challenge = pkce_pair()
    data = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": REGISTERED + "/",
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    assert_error_page(app, browser.post("/authorize", data=data))


# BCP-02 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "candidate"),
    [
        ("http://127.0.0.1/cb", "http://127.0.0.1:53117/cb"),
        ("http://127.0.0.1/cb", "http://127.0.0.1/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:53117/cb"),
        ("http://[::1]/cb", "http://[::1]:53117/cb"),
    ],
)
def test_BCP_02_loopback_redirect_uri_may_change_only_its_port(
    app, make_client, user, registered, candidate
):
    """A native app's loopback redirect URI may use any port (RFC 8252 section 7.3)."""
    rp = make_client(redirect_uris=[registered], first_party=True, auth_method="none")
    response = authorize(signed_in_browser(app), rp.client_id, candidate)
    assert response.status_code == 302, response.data
    assert response.headers["Location"].startswith(candidate + "?")
    assert "code" in query(response.headers["Location"])


@pytest.mark.parametrize(
    "candidate",
    [
        "http://127.0.0.1:53117/other",
        "http://127.0.0.1:53117/cb/",
        "http://127.0.0.1:53117/cb?x=1",
        "http://127.0.0.1:53117/cb#x",
        "https://127.0.0.1:53117/cb",
        "http://localhost/cb",
        "http://localhost:53117/cb",
        "http://localhost.evil.test/cb",
        "http://localhost:80@attacker.test/cb",
        "http://127.0.0.1:53117@attacker.test/cb",
        "http://attacker.test@127.0.0.1:53117/cb",
        "http://127.0.0.1.evil.test/cb",
        "http://[::1]/cb",
        "http://[::1]:53117/cb",
        "http://127.0.0.2:53117/cb",
        "http://127.1/cb",
        "http://2130706433/cb",
        "http://0x7f.0.0.1/cb",
        "http://127.0.0.1:0/cb",
        "http://127.0.0.1:65536/cb",
        "http://127.0.0.1:053117/cb",
        "http://127.0.0.1:/cb",
        "http://127.0.0.1:+80/cb",
        "http://127.0.0.1:53117\\@evil.test/cb",
    ],
)
def test_BCP_02_loopback_variants_other_than_the_port_are_refused(
    app, make_client, user, candidate
):
    """Path, host, scheme, userinfo and malformed-port variants of a loopback URI fail."""
    rp = make_client(redirect_uris=["http://127.0.0.1/cb"], first_party=True, auth_method="none")
    browser = signed_in_browser(app)
    assert_error_page(app, authorize(browser, rp.client_id, candidate))


def test_BCP_02_port_freedom_is_only_for_loopback_uris(app, make_client, user):
    """An https redirect URI never matches with another port."""
    rp = make_client(redirect_uris=["https://rp.test:8443/cb"], first_party=True)
    browser = signed_in_browser(app)
    assert_error_page(app, authorize(browser, rp.client_id, "https://rp.test:9443/cb"))


# BCP-03 ---------------------------------------------------------------------------------

UNSAFE_REGISTRATIONS = [
    "http://rp.test/cb",
    "http://localhost/cb",
    "http://10.0.0.1/cb",
    "https://rp.test/cb#fragment",
    "https://rp.test/cb#",
    "https://user@rp.test/cb",
    "https://user:secret@rp.test/cb",
    "http://user@127.0.0.1/cb",
    "https://*.rp.test/cb",
    "https://rp.test/*",
    "https://rp\\.test/.*",
    "https://rp.test/cb\\x",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "/relative/cb",
    "//rp.test/cb",
    "https:///cb",
    "https://rp.test/cb ",
    "https://rp.test/c b",
    "https://rp.test/cb\n",
    "HTTPS://rp.test/cb",
    "",
]


@pytest.fixture
def dcr_app(app_factory, monkeypatch):
    app = app_factory(dcr_initial_access_token=DCR_TOKEN)
    install_keys(app, monkeypatch)
    return app


def register(app, **metadata):
    body = {"client_name": "Self-registered", **metadata}
    return app.test_client().post(
        "/oauth/register", json=body, headers={"Authorization": f"Bearer {DCR_TOKEN}"}
    )


@pytest.mark.parametrize("uri", UNSAFE_REGISTRATIONS)
def test_BCP_03_dynamic_registration_refuses_unsafe_redirect_uris(dcr_app, uri):
    """http on a non-loopback host, fragments, user info, wildcards and odd schemes fail."""
    response = register(dcr_app, redirect_uris=["https://ok.test/cb", uri])
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_redirect_uri"
    assert count(dcr_app, Client) == 0


@pytest.mark.parametrize("uri", UNSAFE_REGISTRATIONS)
def test_BCP_03_dynamic_registration_refuses_unsafe_post_logout_uris(dcr_app, uri):
    """post_logout_redirect_uris get the same checks as redirect URIs."""
    response = register(
        dcr_app, redirect_uris=["https://ok.test/cb"], post_logout_redirect_uris=[uri]
    )
    assert response.status_code == 400, response.json
    assert count(dcr_app, Client) == 0


def test_BCP_03_dynamic_registration_update_refuses_unsafe_redirect_uris(dcr_app):
    """RFC 7592 updates cannot smuggle in what registration refuses."""
    created = register(dcr_app, redirect_uris=["https://ok.test/cb"])
    assert created.status_code == 201, created.json
    body = created.json
    response = dcr_app.test_client().put(
        f"/oauth/register/{body['client_id']}",
        json={
            "client_id": body["client_id"],
            "client_name": "Self-registered",
            "redirect_uris": ["https://*.ok.test/cb"],
        },
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.test/cb",
        "https://rp.test/cb?tenant=1",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_BCP_03_safe_redirect_uris_can_be_registered(dcr_app, uri):
    """https, loopback http and reverse-domain private schemes are accepted as given."""
    response = register(dcr_app, redirect_uris=[uri], token_endpoint_auth_method="none")
    assert response.status_code == 201, response.json
    assert response.json["redirect_uris"] == [uri]


@pytest.mark.parametrize("uri", UNSAFE_REGISTRATIONS)
def test_BCP_03_cli_metadata_validation_refuses_unsafe_redirect_uris(uri):
    """The metadata validation behind `identity clients create` refuses the same URIs."""
    from identity.oauth.clients.metadata import InvalidRedirectUri, normalize_metadata

    with pytest.raises(InvalidRedirectUri):
        normalize_metadata(
            {"redirect_uris": [uri]},
            known_scopes={"openid"},
            signing_algs=("ES256",),
            default_id_token_alg="ES256",
        )


# BCP-04 ---------------------------------------------------------------------------------

FOREIGN_TARGETS = [
    "https://evil.test/",
    "//evil.test/",
    "/\\evil.test/",
    "\\\\evil.test/",
    "https:evil.test",
    "javascript:alert(1)",
    "data:text/html,x",
    " //evil.test/",
]


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_BCP_04_logout_never_forwards_to_an_unregistered_uri(app, make_client, target):
    """RP-initiated logout ignores a post_logout_redirect_uri that is not registered."""
    rp = make_client(post_logout_redirect_uris=["https://rp.example.org/bye"])
    response = app.test_client().get(
        "/logout?" + urlencode({"client_id": rp.client_id, "post_logout_redirect_uri": target})
    )
    assert not_redirected_to_client(response), response.headers.get("Location")


def test_BCP_04_logout_with_a_valid_hint_still_needs_a_registered_uri(
    app, make_client, flow, client
):
    """Even with a valid id_token_hint, an unregistered post-logout URI is not followed."""
    from tests.oauth.bcp_support import redeem

    rp = make_client(post_logout_redirect_uris=["https://rp.example.org/bye"])
    params, verifier = flow.authorize(rp)
    id_token = redeem(client, rp, params["code"], verifier).json["id_token"]
    response = client.get(
        "/logout?" + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": EVIL})
    )
    assert not_redirected_to_client(response), response.headers.get("Location")


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_BCP_04_sign_in_from_the_authorization_flow_never_leaves_the_server(
    app, client, user, target
):
    """The next= parameter the authorization endpoint relies on only takes local paths."""
    from tests.conftest import PASSWORD, csrf_token

    page = client.get("/sign-in?" + urlencode({"next": target, "force": "1"}))
    data = {
        "csrf_token": csrf_token(page.data),
        "email": "alice@example.org",
        "password": PASSWORD,
        "next": target,
    }
    response = client.post("/sign-in", data=data)
    assert response.status_code == 303
    assert not_redirected_to_client(response), response.headers["Location"]


@pytest.mark.parametrize("request_id", ["x", "https://evil.test", "%2F%2Fevil.test", "a" * 200])
def test_BCP_04_unknown_resume_ids_show_an_error_page(client, user, request_id):
    """A forged /authorize/resume id shows our page; it cannot name a destination."""
    browser = client
    from tests.conftest import sign_in

    sign_in(browser)
    response = browser.get(f"/authorize/resume/{request_id}")
    if response.status_code == 308:  # Werkzeug merges the decoded '//' on this host
        assert response.headers["Location"].startswith("http://localhost/authorize/resume/")
        response = browser.get(response.headers["Location"])
    assert response.status_code in (400, 404)
    assert "Location" not in response.headers


def test_BCP_04_device_page_sends_strangers_to_a_local_sign_in(client):
    """The device page's sign-in redirect carries only a local next= path."""
    response = client.get("/device?user_code=ABCD-EFGH")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert not_redirected_to_client(response)
    next_value = query(location)["next"][0]
    assert next_value.startswith("/device") and not next_value.startswith("//")


# BCP-05 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "unregistered_uri",
        "unknown_client",
        "missing_client",
        "empty_client",
        "missing_uri",
        "empty_uri",
        "other_clients_uri",
        "repeated_uri",
    ],
)
def test_BCP_05_bad_client_or_redirect_uri_shows_our_own_page(app, make_client, user, case):
    """An unknown client or an unregistered redirect URI is never redirected to."""
    rp = make_client(redirect_uris=[REGISTERED], first_party=True)
    other = make_client(redirect_uris=["https://other.test/cb"], first_party=True)
    client_id, uri = {
        "unregistered_uri": (rp.client_id, EVIL),
        "unknown_client": ("no-such-client", REGISTERED),
        "missing_client": (None, REGISTERED),
        "empty_client": ("", REGISTERED),
        "missing_uri": (rp.client_id, None),
        "empty_uri": (rp.client_id, ""),
        "other_clients_uri": (rp.client_id, other.redirect_uri),
        "repeated_uri": (rp.client_id, REGISTERED),
    }[case]
    browser = signed_in_browser(app)
    if case == "repeated_uri":
        path = (
            authorize_url(type(rp)(rp.client_id, None, REGISTERED), pkce_pair()[1])
            + "&"
            + urlencode({"redirect_uri": EVIL})
        )
        response = browser.get(path)
    else:
        response = authorize(browser, client_id, uri)
    assert_error_page(app, response)


def test_BCP_05_another_clients_pushed_request_is_not_used(app, make_client, user):
    """A PAR request_uri presented with another client's client_id shows our error page."""
    owner = make_client(redirect_uris=[REGISTERED], first_party=True)
    other = make_client(redirect_uris=[EVIL], first_party=True)
    _, challenge = pkce_pair()
    pushed = app.test_client().post(
        "/oauth/par",
        data={
            "response_type": "code",
            "redirect_uri": REGISTERED,
            "scope": "openid",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        headers=owner.basic_auth(),
    )
    assert pushed.status_code == 201, pushed.json
    browser = signed_in_browser(app)
    response = browser.get(
        "/authorize?"
        + urlencode({"client_id": other.client_id, "request_uri": pushed.json["request_uri"]})
    )
    assert_error_page(app, response)


def test_BCP_05_error_page_for_strangers_too(app, make_client, client):
    """A browser that is not signed in gets the error page, not a sign-in redirect."""
    rp = make_client(redirect_uris=[REGISTERED])
    assert_error_page(app, authorize(client, rp.client_id, EVIL))


# BCP-06 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"scope": "bogus"},
        {"scope": "openid bogus admin"},
        {"response_type": "token"},
        {"response_type": "code id_token"},
        {"response_type": "bogus"},
        {"response_type": None},
        {"response_mode": "fragment"},
        {"response_mode": "bogus"},
        {"response_mode": "web_message"},
        {"request": "eyJhbGciOiJub25lIn0.e30."},
        {"request_uri": "https://evil.test/request.jwt"},
        {"prompt": "bogus"},
        {"max_age": "soon"},
        {"code_challenge_method": "plain"},
        {"code_challenge": None},
        {"claims": "not json"},
        {"id_token_hint": "not-a-jwt"},
    ],
    ids=lambda params: "-".join(f"{k}={v}" for k, v in params.items()),
)
def test_BCP_06_other_errors_with_an_unregistered_uri_stay_on_our_page(
    app, make_client, user, params
):
    """A request that is wrong in more than one way is judged by its redirect URI first."""
    rp = make_client(redirect_uris=[REGISTERED], first_party=True)
    browser = signed_in_browser(app)
    assert_error_page(app, authorize(browser, rp.client_id, EVIL, **params))


@pytest.mark.parametrize("params", [{"response_type": "token"}, {"response_mode": "bogus"}])
def test_BCP_06_unknown_client_with_other_errors_stays_on_our_page(app, user, params):
    """Without a known client nothing is redirected, whatever else is wrong."""
    browser = signed_in_browser(app)
    assert_error_page(app, authorize(browser, "no-such-client", EVIL, **params))


def test_BCP_06_pushed_request_errors_are_answered_directly(app, make_client):
    """PAR validates the same way and answers errors as JSON, never by redirect."""
    rp = make_client(redirect_uris=[REGISTERED])
    response = app.test_client().post(
        "/oauth/par",
        data={"response_type": "token", "redirect_uri": EVIL, "scope": "openid"},
        headers=rp.basic_auth(),
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.json["error"] == "invalid_request"


# BCP-07 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"response_type": "token"}, {"response_mode": "bogus"}, {"prompt": "bogus"}]
)
def test_BCP_07_erroneous_requests_authenticate_the_user_before_redirecting(
    app, make_client, client, user, params
):
    """RFC 9700 4.11.2: the user signs in before an error is sent to the client."""
    rp = make_client(redirect_uris=[REGISTERED])
    response = authorize(client, rp.client_id, REGISTERED, **params)
    assert response.status_code in (302, 303), response.data
    assert response.headers["Location"].startswith("/sign-in"), response.headers["Location"]
    assert not_redirected_to_client(response)


def test_BCP_07_erroneous_request_reaches_the_client_after_sign_in(app, make_client, flow, user):
    """After signing in, the error goes back to the registered URI with state and iss."""
    rp = make_client(redirect_uris=[REGISTERED])
    first = authorize(flow.browser, rp.client_id, REGISTERED, response_type="token")
    response = flow.follow_to_client(first)
    assert response.status_code in (302, 303)
    location = response.headers["Location"]
    assert location.startswith(REGISTERED + "?")
    params = query(location)
    assert params["error"] == ["unsupported_response_type"]
    assert params["state"] == ["s"]
    assert params["iss"] == [issuer(app)]
    assert codes_minted(app) == 0


def test_BCP_07_silent_requests_answer_without_sign_in(app, make_client, client, user):
    """prompt=none is the silent-authentication exception: login_required comes back."""
    rp = make_client(redirect_uris=[REGISTERED])
    response = authorize(client, rp.client_id, REGISTERED, prompt="none")
    assert response.status_code == 302
    params = query(response.headers["Location"])
    assert response.headers["Location"].startswith(REGISTERED + "?")
    assert params["error"] == ["login_required"]
    assert params["iss"] == [issuer(app)]


def test_BCP_07_self_registered_clients_get_a_warning_consent_page(app, make_client, user):
    """A dynamically registered client is never approved before the user saw its consent
    page flagged as unreviewed; the consent is then remembered (OIDC prompt=none works) and
    prompt=consent shows the warning again."""
    rp = make_client(redirect_uris=[REGISTERED], registered_via="dynamic")
    browser = signed_in_browser(app)
    response = authorize(browser, rp.client_id, REGISTERED)
    assert response.status_code == 200, response.headers.get("Location")
    assert b"has not been reviewed" in response.data
    approve = browser.post(
        "/authorize/consent", data={**consent_form(response), "decision": "allow"}
    )
    assert approve.status_code == 303
    assert authorize(browser, rp.client_id, REGISTERED).status_code == 302
    again = authorize(browser, rp.client_id, REGISTERED, prompt="consent")
    assert b"has not been reviewed" in again.data
    assert codes_minted(app) == 2


def test_BCP_07_self_registered_client_errors_are_not_bounced_automatically(app, make_client, user):
    """An erroneous request from an unreviewed client is not silently bounced to its URI."""
    rp = make_client(redirect_uris=[REGISTERED], registered_via="dynamic")
    browser = signed_in_browser(app)
    response = authorize(browser, rp.client_id, REGISTERED, response_type="token")
    assert "Location" not in response.headers
    assert response.status_code == 400
    assert b"has not been reviewed" in response.data
    # The user may still choose to return, and the link carries the error, state and iss.
    import html
    import re

    links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', response.data.decode())]
    back = [h for h in links if h.startswith(REGISTERED + "?")]
    assert len(back) == 1, links
    assert query(back[0])["error"] == ["unsupported_response_type"]
    assert query(back[0])["state"] == ["s"]
    assert query(back[0])["iss"] == [issuer(app)]
    assert codes_minted(app) == 0


def test_BCP_07_self_registered_client_errors_in_form_post_mode_need_a_click(
    app, make_client, user
):
    """In form_post mode the unreviewed client's error is a form the user must submit."""
    rp = make_client(redirect_uris=[REGISTERED], registered_via="dynamic")
    browser = signed_in_browser(app)
    response = authorize(
        browser, rp.client_id, REGISTERED, response_type="token", response_mode="form_post"
    )
    assert response.status_code == 400
    page = response.data.decode()
    assert f'action="{REGISTERED}"' in page
    assert "<script" not in page
    assert 'name="error" value="unsupported_response_type"' in page
    assert "form-action 'self' https://rp.test;" in response.headers["Content-Security-Policy"]


def test_BCP_07_declining_redirects_only_to_the_registered_uri(app, make_client, user):
    """A declined request goes back only to the registered URI, with access_denied."""
    rp = make_client(redirect_uris=[REGISTERED])
    browser = signed_in_browser(app)
    page = authorize(browser, rp.client_id, REGISTERED)
    assert page.status_code == 200
    response = browser.post("/authorize/consent", data={**consent_form(page), "decision": "no"})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(REGISTERED + "?")
    assert query(location)["error"] == ["access_denied"]
    assert codes_minted(app) == 0


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.test;x/cb",
        "https://bücher.example/cb",
        "https://rp.test:99999/cb",
        "https://a_b.test/cb",
    ],
)
def test_BCP_03_redirect_uri_hosts_must_be_dns_names_or_ip_literals(uri):
    """Hosts with characters a DNS name cannot have (or a bad port) are refused at registration."""
    from identity.oauth.clients.metadata import InvalidRedirectUri, check_redirect_uri

    with pytest.raises(InvalidRedirectUri):
        check_redirect_uri(uri)


def test_a_client_changed_through_rfc_7592_is_used_at_once_by_this_process(dcr_app):
    """The process that commits a client change drops its cached copy at the commit (the
    change feed), without waiting for the listener: an update takes effect on the next
    request, and a deleted client is unknown at once."""
    created = register(
        dcr_app, redirect_uris=["https://ok.test/cb"], token_endpoint_auth_method="none"
    )
    assert created.status_code == 201, created.json
    body = created.json
    web = dcr_app.test_client()
    query = {"client_id": body["client_id"], "response_type": "code", "scope": "openid"}
    first = web.get("/authorize", query_string={**query, "redirect_uri": "https://ok.test/cb"})
    assert first.status_code != 400  # cached now, with its first redirect URI
    auth = {"Authorization": f"Bearer {body['registration_access_token']}"}
    updated = web.put(
        f"/oauth/register/{body['client_id']}",
        json={
            "client_id": body["client_id"],
            "redirect_uris": ["https://ok.test/new"],
            "token_endpoint_auth_method": "none",
        },
        headers=auth,
    )
    assert updated.status_code == 200, updated.json
    old = web.get("/authorize", query_string={**query, "redirect_uri": "https://ok.test/cb"})
    assert old.status_code == 400  # our error page: no longer registered
    new = web.get("/authorize", query_string={**query, "redirect_uri": "https://ok.test/new"})
    assert new.status_code != 400
    token = {"Authorization": f"Bearer {updated.json['registration_access_token']}"}
    assert web.delete(f"/oauth/register/{body['client_id']}", headers=token).status_code == 204
    gone = web.get("/authorize", query_string={**query, "redirect_uri": "https://ok.test/new"})
    assert gone.status_code == 400
