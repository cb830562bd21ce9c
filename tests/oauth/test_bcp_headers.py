"""RFC 9700 sections 4.3, 4.12, 4.13 and 4.16 on the authorization pages: no framing, a
strict CSP and referrer policy, 303 after POST, no CORS, no trust in forwarded headers, and
no tokens in URLs or logs (BCP-39 .. BCP-44, BCP-47)."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from tests.conftest import PASSWORD, csrf_token
from tests.oauth.bcp_support import (
    consent_form,
    install_keys,
    introspect,
    query,
    redeem,
    refresh,
    signed_in_browser,
)
from tests.oauth.conftest import REDIRECT_URI, pkce_pair

ALLOWED_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin"}


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


def authorize_path(rp, **params) -> str:
    _, challenge = pkce_pair()
    values = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid profile",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    return "/authorize?" + urlencode({k: v for k, v in values.items() if v is not None})


def oauth_pages(app, make_client, client) -> dict:
    """Every HTML page of the authorization and device flows, by name."""
    third_party = make_client()
    first_party = make_client(first_party=True)
    dynamic = make_client(registered_via="dynamic")
    device = make_client(grant_types=["urn:ietf:params:oauth:grant-type:device_code"])
    pages = {}
    pages["error"] = client.get(authorize_path(third_party, redirect_uri="https://evil.test/"))
    to_sign_in = client.get(authorize_path(third_party))
    assert to_sign_in.status_code == 302
    pages["sign_in"] = client.get(to_sign_in.headers["Location"])
    pages["resume_error"] = client.get("/authorize/resume/unknown")
    browser = signed_in_browser(app)
    pages["consent"] = browser.get(authorize_path(third_party))
    pages["form_post"] = browser.get(authorize_path(first_party, response_mode="form_post"))
    pages["untrusted_error"] = browser.get(authorize_path(dynamic, response_type="token"))
    pages["device"] = browser.get("/device")
    code = client.post(
        "/oauth/device_authorization", data={"scope": "openid"}, headers=device.basic_auth()
    ).json["user_code"]
    pages["device_confirm"] = browser.post(
        "/device",
        data={"csrf_token": csrf_token(pages["device"].data), "user_code": code},
    )
    pages["logout_confirm"] = browser.get("/logout")
    pages["logged_out"] = app.test_client().get("/logout")
    for name, response in pages.items():
        assert response.mimetype == "text/html", name
        assert response.status_code in (200, 400), (name, response.status_code)
    return pages


@pytest.fixture
def pages(app, make_client, client, user):
    return oauth_pages(app, make_client, client)


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict((part.strip() + " ").split(" ", 1) for part in policy.split(";") if part.strip())


class Resources(HTMLParser):
    """URLs a page loads (src, stylesheets), links to, and posts to; inline code."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.actions: list[str] = []
        self.inline = []
        self._script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.inline += [name for name, _ in attrs if name.startswith("on")]
        if "style" in values:
            self.inline.append("style")
        if values.get("src"):
            self.loads.append(values["src"])
        if tag == "link" and values.get("href"):
            self.loads.append(values["href"])
        if tag == "a" and values.get("href"):
            self.links.append((values["href"], values.get("rel") or ""))
        if tag == "form":
            self.actions.append(values.get("action") or "")
        if tag in ("iframe", "object", "embed", "frame"):
            self.inline.append(tag)
        self._script = tag == "script"

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script and data.strip():
            self.inline.append("script")


# The empty inline favicon: nothing is fetched, from here or elsewhere.
EMPTY_ICON = "data:,"


def same_origin(url: str) -> bool:
    if url == EMPTY_ICON:
        return True
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


# BCP-39 ---------------------------------------------------------------------------------


def test_BCP_39_authorization_pages_cannot_be_framed(pages):
    """Every authorization, sign-in, consent, error, device and logout page forbids framing."""
    for name, response in pages.items():
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert directives(response)["frame-ancestors"].strip() == "'none'", name


# BCP-40 ---------------------------------------------------------------------------------


def test_BCP_40_authorization_pages_have_a_strict_csp_and_no_inline_code(pages):
    """Scripts only from this origin, no plugins, no base tag hijacking, no inline code."""
    for name, response in pages.items():
        policy = directives(response)
        assert policy["script-src"].strip() == "'self'", name
        assert policy.get("object-src", policy.get("default-src", "")).strip() == "'none'", name
        assert policy["base-uri"].strip() == "'none'", name
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"], name
        assert "unsafe-eval" not in response.headers["Content-Security-Policy"], name
        assert Resources(response.data.decode()).inline == [], name


# BCP-41 ---------------------------------------------------------------------------------


def test_BCP_41_authorization_pages_leak_no_referrer_and_load_nothing_foreign(pages):
    """A strict Referrer-Policy; nothing loaded from elsewhere; foreign links say
    noreferrer; forms post here, or (form_post) to the registered redirect URI only."""
    for name, response in pages.items():
        assert response.headers["Referrer-Policy"] in ALLOWED_REFERRER_POLICIES, name
        found = Resources(response.data.decode())
        assert all(same_origin(url) for url in found.loads), (name, found.loads)
        for url, rel in found.links:
            assert same_origin(url) or "noreferrer" in rel.split(), (name, url, rel)
        allowed_actions = {REDIRECT_URI, "https://rp.example.org/cb"}
        for action in found.actions:
            assert same_origin(action) or action in allowed_actions, (name, action)


def test_BCP_41_consent_page_links_to_client_documents_without_referrer(app, make_client, user):
    """The client's policy and terms links on the consent page send no Referer."""
    rp = make_client(
        policy_uri="https://rp.example.org/privacy", tos_uri="https://rp.example.org/tos"
    )
    page = signed_in_browser(app).get(authorize_path(rp))
    links = dict(Resources(page.data.decode()).links)
    assert "noreferrer" in links["https://rp.example.org/privacy"].split()
    assert "noreferrer" in links["https://rp.example.org/tos"].split()


def test_BCP_41_the_code_response_carries_a_referrer_policy(app, make_client, user):
    """The redirect that carries the code says which referrer browsers may send."""
    rp = make_client(first_party=True)
    response = signed_in_browser(app).get(authorize_path(rp))
    assert response.status_code == 302
    assert response.headers["Referrer-Policy"] in ALLOWED_REFERRER_POLICIES
    assert response.headers["Cache-Control"] == "no-store"


# BCP-42 ---------------------------------------------------------------------------------


def test_BCP_42_sign_in_during_authorization_answers_303(app, make_client, client, user):
    """The sign-in POST that continues an authorization is answered with 303."""
    rp = make_client()
    location = client.get(authorize_path(rp)).headers["Location"]
    page = client.get(location)
    response = client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_token(page.data),
            "email": "alice@example.org",
            "password": PASSWORD,
            "next": query(location)["next"][0],
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/authorize/resume/")


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_BCP_42_consent_answers_303(app, make_client, user, decision):
    """Both consent decisions reach the client with 303, never 307/308."""
    rp = make_client()
    browser = signed_in_browser(app)
    page = browser.get(authorize_path(rp))
    response = browser.post("/authorize/consent", data={**consent_form(page), "decision": decision})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")


def test_BCP_42_posted_authorization_requests_answer_303(app, make_client, user):
    """An authorization request sent by POST is answered with 303, so the browser does
    not re-post the form to the client."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    path = authorize_path(rp)
    data = dict(query_item for query_item in _pairs(path))
    response = browser.post("/authorize", data=data)
    assert response.status_code == 303
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    error = browser.post("/authorize", data={**data, "response_type": "token"})
    assert error.status_code == 303


def _pairs(path: str):
    return ((k, v[0]) for k, v in query(path).items())


def test_BCP_42_no_oauth_redirect_uses_307_or_308(app, make_client, client, user):
    """Across a whole flow with sign-in, consent and errors, no answer is 307 or 308."""
    rp = make_client()
    statuses = []
    response = client.get(authorize_path(rp))
    statuses.append(response.status_code)
    location = response.headers["Location"]
    page = client.get(location)
    response = client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_token(page.data),
            "email": "alice@example.org",
            "password": PASSWORD,
            "next": query(location)["next"][0],
        },
    )
    statuses.append(response.status_code)
    page = client.get(response.headers["Location"])
    statuses.append(page.status_code)
    response = client.post("/authorize/consent", data={**consent_form(page), "decision": "allow"})
    statuses.append(response.status_code)
    assert not {307, 308} & set(statuses), statuses


# BCP-43 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
@pytest.mark.parametrize(
    "path",
    ["/authorize", "/authorize/resume/x", "/authorize/consent", "/device", "/logout"],
)
def test_BCP_43_no_cors_on_the_authorization_endpoint(app, make_client, user, method, path):
    """A foreign Origin gets no Access-Control-Allow-Origin from browser-facing endpoints."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    target = authorize_path(rp) if path == "/authorize" and method == "GET" else path
    response = browser.open(
        target,
        method=method,
        headers={
            "Origin": "https://evil.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "Access-Control-Allow-Origin" not in response.headers, response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/jwks.json", "/.well-known/openid-configuration"]
)
def test_BCP_43_cors_where_it_belongs_never_with_credentials(client, path):
    """Token, JWKS and metadata allow any origin but never with credentials."""
    method = "OPTIONS" if path == "/oauth/token" else "GET"
    response = client.open(path, method=method, headers={"Origin": "https://spa.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


# BCP-44 ---------------------------------------------------------------------------------

SPOOFED = {
    "X-Forwarded-Host": "evil.test",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "444",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-For": "203.0.113.66",
    "X-Real-IP": "203.0.113.66",
    "Forwarded": "for=203.0.113.66;host=evil.test;proto=https",
}


@pytest.mark.parametrize("trusted_proxies", [0, 1])
def test_BCP_44_forwarded_headers_do_not_change_issuer_or_redirects(
    app_factory, make_client, trusted_proxies
):
    """Spoofed forwarding headers (and Host) leave iss, discovery and redirects alone."""
    server = app_factory(trusted_proxies=trusted_proxies)
    rp = make_client()
    browser = server.test_client()
    document = browser.get(
        "/.well-known/openid-configuration", headers=SPOOFED, base_url="http://evil.test"
    ).json
    assert document["issuer"] == "http://127.0.0.1:8000"
    assert all("evil" not in str(v) for v in document.values())
    silent = browser.get(
        authorize_path(rp, prompt="none"), headers=SPOOFED, base_url="http://evil.test"
    )
    assert silent.headers["Location"].startswith(REDIRECT_URI + "?")
    assert query(silent.headers["Location"])["iss"] == ["http://127.0.0.1:8000"]
    to_sign_in = browser.get(authorize_path(rp), headers=SPOOFED, base_url="http://evil.test")
    location = to_sign_in.headers["Location"]
    assert location.startswith("/sign-in?") and "evil" not in location


def test_BCP_44_audit_records_the_peer_not_a_spoofed_address(app, make_client, user):
    """Without trusted proxies the authorization is audited with the TCP peer address."""
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    response = browser.get(authorize_path(rp), headers=SPOOFED)
    assert response.status_code == 302
    with app.app_context():
        row = db.session.execute(
            select(AuditEvent).where(AuditEvent.event == "oauth.authorize")
        ).scalar_one()
        assert row.ip == "127.0.0.1"


# BCP-47 ---------------------------------------------------------------------------------

TOKEN_PARAMS = ("access_token", "refresh_token", "id_token", "token", "client_secret")


def test_BCP_47_no_token_ever_travels_in_a_url(app, make_client, client, user):
    """Across sign-in, consent, the callback and the token exchange, every Location carries
    only our own parameters or code, state and iss; no token value appears in any URL."""
    rp = make_client()
    locations = []
    verifier, challenge = pkce_pair()
    response = client.get(authorize_path(rp, code_challenge=challenge))
    for _ in range(6):
        if response.status_code in (302, 303):
            locations.append(response.headers["Location"])
            if response.headers["Location"].startswith(REDIRECT_URI):
                break
            if response.headers["Location"].startswith("/sign-in"):
                page = client.get(response.headers["Location"])
                response = client.post(
                    "/sign-in",
                    data={
                        "csrf_token": csrf_token(page.data),
                        "email": "alice@example.org",
                        "password": PASSWORD,
                        "next": query(response.headers["Location"])["next"][0],
                    },
                )
            else:
                response = client.get(response.headers["Location"])
        else:
            response = client.post(
                "/authorize/consent", data={**consent_form(response), "decision": "allow"}
            )
    callback = query(locations[-1])
    assert set(callback) == {"code", "state", "iss"}
    tokens = redeem(client, rp, callback["code"][0], verifier).json
    values = [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    for location in locations:
        assert not set(query(location)) & set(TOKEN_PARAMS), location
        assert not any(value in location for value in values), location


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/userinfo", "access_token"),
        ("/oauth/introspect", "token"),
        ("/oauth/revoke", "token"),
        ("/oauth/token", "refresh_token"),
        ("/oauth/token", "code"),
    ],
)
def test_BCP_47_tokens_in_the_query_string_are_refused(app, make_client, user, client, path, param):
    """A token offered in the URL is refused even when it is valid."""
    rp = make_client(first_party=True)
    from tests.oauth.bcp_support import tokens_for

    tokens = tokens_for(signed_in_browser(app), rp)
    value = (
        tokens["refresh_token"] if param in ("refresh_token", "token") else tokens["access_token"]
    )
    url = f"{path}?{urlencode({param: value})}"
    if path == "/userinfo":
        response = client.get(url)
    else:
        body = {"grant_type": "refresh_token"} if param == "refresh_token" else {}
        response = client.post(url, data=body, headers=rp.basic_auth())
    assert response.status_code in (400, 401), (path, response.status_code, response.json)
    assert "access_token" not in (response.json or {})
    assert (response.json or {}).get("active") is not True
    # ...and the token offered in the URL was not used up or revoked by it.
    assert introspect(client, rp, tokens["refresh_token"])["active"] is True


def test_BCP_47_tokens_and_secrets_never_reach_the_logs(app_factory, make_client, user, caplog):
    """Request logs of a whole flow hold no code, token or secret."""
    server = app_factory(log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    rp = make_client(first_party=True)
    from tests.oauth.bcp_support import code_for

    browser = signed_in_browser(server)
    callback, verifier = code_for(browser, rp)
    tokens = redeem(browser, rp, callback["code"], verifier).json
    refreshed = refresh(browser, rp, tokens["refresh_token"]).json
    browser.get("/userinfo", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert caplog.records, "no log records captured"
    text = "\n".join(r.getMessage() + " " + repr(r.__dict__) for r in caplog.records)
    secrets_ = [
        callback["code"],
        verifier,
        rp.client_secret,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ]
    for value in secrets_:
        assert value not in text
    assert not re.search(r"[?&](code|access_token|refresh_token)=", text)
