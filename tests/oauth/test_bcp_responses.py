"""RFC 9700 / RFC 9207: authorization responses carry iss and the exact state, discovery
matches behaviour, and form_post pages are inert (BCP-37, BCP-38, BCP-45, BCP-46, BCP-48)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

import pytest

from tests.oauth.bcp_support import (
    consent_form,
    install_keys,
    query,
    signed_in_browser,
)
from tests.oauth.conftest import REDIRECT_URI, pkce_pair

HTTPS_ISSUER = "https://id.example.test"


@pytest.fixture
def keys(app, monkeypatch):
    """Signing keys generated once per session (see bcp_support.install_keys)."""
    install_keys(app, monkeypatch)


class Page(HTMLParser):
    """The forms, inputs and scripts of a page, with attribute values unescaped."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "form":
            self.forms.append(values)
        elif tag == "input":
            self.inputs.append(values)
        elif tag == "script":
            self.scripts.append(values)
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_script = True

    def fields(self) -> dict[str, str | None]:
        return {i["name"]: i.get("value") for i in self.inputs if i.get("type") == "hidden"}


def authorize(browser, rp, base_url=None, **params):
    _, challenge = pkce_pair()
    values = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    path = "/authorize?" + urlencode({k: v for k, v in values.items() if v is not None})
    return browser.get(path, base_url=base_url) if base_url else browser.get(path)


def answer(response) -> dict[str, str]:
    """The parameters an authorization response hands the client, in either mode."""
    if response.status_code in (302, 303):
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?"), location
        params = query(location)
        assert all(len(v) == 1 for v in params.values()), params
        return {k: v[0] for k, v in params.items()}
    assert response.status_code == 200, response.data
    page = Page(response.data.decode())
    assert [f["action"] for f in page.forms] == [REDIRECT_URI]
    return {k: v or "" for k, v in page.fields().items()}


def discovery_issuer(client) -> str:
    return client.get("/.well-known/openid-configuration").json["issuer"]


# BCP-37 ---------------------------------------------------------------------------------


def scenario(name, app, make_client, client, mode):
    """Run one kind of authorization response; returns the response."""
    extra = {} if mode == "query" else {"response_mode": "form_post"}
    if name == "success":
        rp = make_client(first_party=True)
        return authorize(signed_in_browser(app), rp, **extra)
    if name == "access_denied":
        rp = make_client()
        browser = signed_in_browser(app)
        page = authorize(browser, rp, **extra)
        return browser.post("/authorize/consent", data={**consent_form(page), "decision": "no"})
    if name == "login_required":
        return authorize(client, make_client(), prompt="none", **extra)
    if name == "consent_required":
        return authorize(signed_in_browser(app), make_client(), prompt="none", **extra)
    if name == "unsupported_response_type":
        rp = make_client(first_party=True)
        return authorize(signed_in_browser(app), rp, response_type="token", **extra)
    if name == "invalid_request":
        rp = make_client(first_party=True)
        return authorize(signed_in_browser(app), rp, prompt="sometimes", **extra)
    if name == "invalid_request_object":
        rp = make_client(first_party=True)
        return authorize(signed_in_browser(app), rp, request="e30.e30.", **extra)
    raise AssertionError(name)


@pytest.mark.parametrize("mode", ["query", "form_post"])
@pytest.mark.parametrize(
    "name",
    [
        "success",
        "access_denied",
        "login_required",
        "consent_required",
        "unsupported_response_type",
        "invalid_request",
        "invalid_request_object",
    ],
)
def test_BCP_37_every_authorization_response_carries_iss(
    app, make_client, client, user, name, mode
):
    """Success and error responses, in both response modes, carry iss equal to the
    discovery issuer, and the state."""
    params = answer(scenario(name, app, make_client, client, mode))
    assert params["iss"] == discovery_issuer(client)
    assert params["state"] == "st"
    if name == "success":
        assert "code" in params and "error" not in params
    else:
        assert params["error"] == name and "code" not in params


def test_BCP_37_iss_is_the_https_issuer_byte_for_byte(app_factory, make_client):
    """With an https issuer, iss is exactly the advertised issuer: https, no query, no
    fragment, no trailing slash, whatever host the request used."""
    server = app_factory(issuer=HTTPS_ISSUER + "/")
    rp = make_client()
    browser = server.test_client()
    document = browser.get("/.well-known/openid-configuration", base_url="https://other.test").json
    assert document["issuer"] == HTTPS_ISSUER
    assert document["authorization_response_iss_parameter_supported"] is True
    response = authorize(browser, rp, base_url="https://other.test", prompt="none")
    params = answer(response)
    assert params["iss"] == HTTPS_ISSUER
    parts = urlsplit(params["iss"])
    assert parts.scheme == "https" and not parts.query and not parts.fragment


# BCP-38 ---------------------------------------------------------------------------------


def test_BCP_38_both_discovery_documents_are_published_and_agree(client):
    """OpenID and RFC 8414 metadata are both served, identical, with the exact issuer."""
    openid = client.get("/.well-known/openid-configuration")
    oauth = client.get("/.well-known/oauth-authorization-server")
    assert openid.status_code == oauth.status_code == 200
    assert openid.json == oauth.json
    assert openid.json["issuer"] == "http://127.0.0.1:8000"


def test_BCP_38_every_endpoint_is_https_under_an_https_issuer(app_factory, monkeypatch):
    """Under an https issuer every advertised URL is an https URL below the issuer, and the
    document does not follow the request's Host."""
    server = app_factory(issuer=HTTPS_ISSUER)
    install_keys(server, monkeypatch)
    document = (
        server.test_client()
        .get(
            "/.well-known/openid-configuration",
            base_url="http://evil.test",
            headers={"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "http"},
        )
        .json
    )
    assert document["issuer"] == HTTPS_ISSUER
    urls = {k: v for k, v in document.items() if k.endswith(("_endpoint", "_uri"))}
    assert {"authorization_endpoint", "token_endpoint", "jwks_uri"} <= urls.keys()
    for name, url in urls.items():
        assert url.startswith(HTTPS_ISSUER + "/"), (name, url)


def test_BCP_38_discovery_matches_behaviour(app, keys, client):
    """What discovery advertises is what the endpoints do."""
    document = client.get("/.well-known/openid-configuration").json
    assert document["response_types_supported"] == ["code"]
    assert set(document["response_modes_supported"]) == {"query", "form_post"}
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "password" not in document["grant_types_supported"]
    assert "none" not in document["introspection_endpoint_auth_methods_supported"]
    assert document["request_parameter_supported"] is True
    assert document["request_uri_parameter_supported"] is True
    assert document["require_request_uri_registration"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    assert "registration_endpoint" not in document  # registration is off by default
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        path = urlsplit(document[name]).path
        assert client.open(path, method="OPTIONS").status_code != 404, name
    assert client.get(urlsplit(document["jwks_uri"]).path).json["keys"]


# BCP-45 ---------------------------------------------------------------------------------

STATES = [
    "x" * 500,
    "\u00e9tat-\U0001f600-\u72b6\u614b",
    "<script>alert(1)</script>\"'&amp;",
    "a b+c%20d&e=f#g",
    "javascript:alert(1)",
    "  padded  ",
]


@pytest.mark.parametrize("mode", ["query", "form_post"])
@pytest.mark.parametrize("state", STATES, ids=range(len(STATES)))
def test_BCP_45_state_is_echoed_exactly_on_success_and_error(app, make_client, user, state, mode):
    """Long, unicode, HTML and URL-special state values come back unchanged, both with a
    code and with an error."""
    rp = make_client(first_party=True)
    browser = signed_in_browser(app)
    extra = {} if mode == "query" else {"response_mode": "form_post"}
    assert answer(authorize(browser, rp, state=state, **extra))["state"] == state
    error = answer(authorize(browser, rp, state=state, response_type="token", **extra))
    assert error["error"] == "unsupported_response_type"
    assert error["state"] == state


def test_BCP_45_state_survives_sign_in_and_consent(app, make_client, flow):
    """The state is kept unchanged across the sign-in and consent pages."""
    rp = make_client()
    state = STATES[2] + STATES[1]
    params, _ = flow.authorize(rp, state=state)
    assert params["state"] == state


def test_BCP_45_no_state_means_no_state_parameter(app, make_client, user):
    """Without a state the response has none (never an empty or invented one)."""
    rp = make_client(first_party=True)
    params = answer(authorize(signed_in_browser(app), rp, state=None))
    assert "state" not in params


# BCP-46 ---------------------------------------------------------------------------------

HOSTILE = '"><script>alert(1)</script><form action="https://evil.test">\'javascript:x'


@pytest.mark.parametrize("outcome", ["success", "error"])
def test_BCP_46_form_post_escapes_everything_and_targets_only_the_redirect_uri(
    app, make_client, user, outcome
):
    """Hostile values appear only as escaped input values of one form aimed at the
    registered URI; the page runs no inline script and may post only to that origin."""
    rp = make_client(first_party=True)
    extra = {"response_type": "token"} if outcome == "error" else {}
    response = authorize(
        signed_in_browser(app), rp, state=HOSTILE, response_mode="form_post", **extra
    )
    assert response.status_code == 200
    html = response.data.decode()
    assert "<script>alert" not in html and 'action="https://evil.test"' not in html
    page = Page(html)
    assert [f["action"] for f in page.forms] == [REDIRECT_URI]
    assert [f.get("method") for f in page.forms] == ["post"]
    assert page.fields()["state"] == HOSTILE
    assert not page.inline_script
    assert [s["src"] for s in page.scripts] == ["/static/form_post.js"]
    policy = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["form-action"] == "https://rp.example.org"
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy
    assert directives["frame-ancestors"] == "'none'"


def test_BCP_46_a_strange_registered_uri_is_escaped_too(app, make_client, user):
    """Quotes and angle brackets in a registered redirect URI cannot break out of the
    form's action attribute or the CSP header."""
    weird = "https://rp.test/cb?x=%22&y=\"'><b>"
    from identity.oauth.clients.metadata import InvalidRedirectUri

    try:
        rp = make_client(first_party=True, redirect_uris=[weird])
    except InvalidRedirectUri:
        return  # refusing such a URI at registration is fine too
    response = authorize(signed_in_browser(app), rp, response_mode="form_post")
    assert response.status_code == 200, response.data
    page = Page(response.data.decode())
    assert [f["action"] for f in page.forms] == [weird]
    assert "<b>" not in response.data.decode()
    assert "form-action https://rp.test;" in response.headers["Content-Security-Policy"]


def test_BCP_46_javascript_redirect_uris_cannot_be_registered():
    """A javascript: or data: URI can never become a form_post target."""
    from identity.oauth.clients.metadata import InvalidRedirectUri, check_redirect_uri

    for uri in ("javascript:alert(1)", "JavaScript://x/%0aalert(1)", "data:text/html,x"):
        with pytest.raises(InvalidRedirectUri):
            check_redirect_uri(uri)


# BCP-48 (P2) ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["web_message", "fragment", "query.jwt", "form_post.jwt"])
def test_BCP_48_unsupported_response_modes_are_refused(app, make_client, user, client, mode):
    """No postMessage (or other) response mode exists: the request fails with
    invalid_request in the default query mode, and discovery does not list it."""
    rp = make_client(first_party=True)
    response = authorize(signed_in_browser(app), rp, response_mode=mode)
    params = answer(response)
    assert params["error"] == "invalid_request"
    assert "code" not in params
    document = client.get("/.well-known/openid-configuration").json
    assert mode not in document["response_modes_supported"]
