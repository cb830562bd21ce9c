"""Web front-end security: CSRF, safe methods, headers, framing, CORS, proxies, hygiene."""

from __future__ import annotations

import re

import pytest

from identity.models.session import LoginSession
from tests.conftest import PASSWORD, Mailbox, csrf_token, form_post, sign_in
from tests.functional.conftest import (
    add_user,
    audit_events,
    cookie_value,
    count,
    get_user,
)

HTTPS = "https://id.example.org"

PAGES = [
    "/sign-in",
    "/register",
    "/register/sent",
    "/forgot-password",
    "/forgot-password/sent",
    "/verify-email/resend",
    "/verify-email/sent",
    "/verify-email/some-token",
    "/reset-password/bad-token",
    "/no-such-page",
]


def reset_link(client, mailbox, email="alice@example.org"):
    form_post(client, "/forgot-password", {"email": email})
    return mailbox.last_link(email)


# WEB-01 ---------------------------------------------------------------------------------


def test_WEB_01_state_changing_forms_refuse_posts_without_csrf_token(app, client, user, mailbox):
    """Every state-changing form answers 400 to a POST without a CSRF token."""
    form_post(client, "/forgot-password", {"email": "alice@example.org"})
    reset = mailbox.last_link("alice@example.org")
    add_user(app, "pending@example.org", verified=False)
    form_post(client, "/verify-email/resend", {"email": "pending@example.org"})
    verify = mailbox.last_link("pending@example.org")
    anonymous = {
        "/sign-in": {"email": "alice@example.org", "password": PASSWORD},
        "/register": {"email": "new@example.org", "password": PASSWORD},
        "/forgot-password": {"email": "alice@example.org"},
        "/verify-email/resend": {"email": "pending@example.org"},
        verify: {},
        reset: {"password": "a brand new passphrase"},
    }
    mails_before = len(mailbox.messages)
    for path, data in anonymous.items():
        response = app.test_client().post(path, data=data)
        assert response.status_code == 400, path
        assert "The CSRF token is missing." in response.data.decode(), path
    assert len(mailbox.messages) == mails_before
    assert get_user(app, "new@example.org") is None
    assert get_user(app, "pending@example.org").email_verified_at is None
    assert sign_in(app.test_client()).status_code == 303  # password unchanged


def test_WEB_01_signed_in_forms_refuse_posts_without_csrf_token(app, signed_in):
    """Sign-out and password change refuse token-less POSTs and change nothing."""
    data = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    assert signed_in.post("/account/password", data=data).status_code == 400
    assert signed_in.post("/sign-out").status_code == 400
    assert signed_in.get("/account").status_code == 200
    assert sign_in(app.test_client()).status_code == 303


def test_WEB_01_cross_site_post_with_the_attackers_own_token_is_refused(app, signed_in):
    """A token from the attacker's own session does not work in the victim's browser."""
    signed_in.get("/account/password")  # the victim's session holds its own token
    attacker = app.test_client()
    token = csrf_token(attacker.get("/sign-in").data)
    data = {"csrf_token": token, "current_password": PASSWORD, "new_password": "attacker's pick"}
    evil = {"Origin": "https://evil.test"}
    response = signed_in.post("/account/password", data=data, headers=evil)
    assert response.status_code == 400
    assert "The CSRF tokens do not match." in response.data.decode()
    assert signed_in.post("/sign-out", data={"csrf_token": token}).status_code == 400
    assert signed_in.get("/account").status_code == 200


def test_WEB_01_https_forms_work_with_the_referrer_our_policy_lets_browsers_send(app_factory):
    """Over https a browser obeying our Referrer-Policy can still post forms.

    Flask-WTF checks the Referer on https; a policy of no-referrer would make every form
    fail in real browsers.
    """
    app = app_factory(issuer=HTTPS)
    add_user(app)
    client = app.test_client()
    page = client.get("/sign-in", base_url=HTTPS)
    policy = page.headers["Referrer-Policy"]
    assert policy in ("same-origin", "strict-origin", "strict-origin-when-cross-origin")
    assert f'<meta name="referrer" content="{policy}">' in page.data.decode()
    sent = HTTPS + "/sign-in" if policy == "same-origin" else HTTPS + "/"
    data = {"csrf_token": csrf_token(page.data), "email": "alice@example.org", "password": PASSWORD}
    response = client.post("/sign-in", base_url=HTTPS, data=data, headers={"Referer": sent})
    assert response.status_code == 303


def test_WEB_01_https_posts_from_another_site_are_refused(app_factory):
    """Over https a POST whose Referer is another site is refused even with a token."""
    app = app_factory(issuer=HTTPS)
    add_user(app)
    client = app.test_client()
    page = client.get("/sign-in", base_url=HTTPS)
    data = {"csrf_token": csrf_token(page.data), "email": "alice@example.org", "password": PASSWORD}
    response = client.post(
        "/sign-in", base_url=HTTPS, data=data, headers={"Referer": "https://evil.test/x"}
    )
    assert response.status_code == 400
    assert "The referrer does not match the host." in response.data.decode()


# WEB-02 ---------------------------------------------------------------------------------


def test_WEB_02_get_sign_out_changes_nothing(app, signed_in):
    """GET and HEAD /sign-out only show a confirmation; the session stays alive."""
    response = signed_in.get("/sign-out")
    assert response.status_code == 200
    assert "Sign out of identity on this browser?" in response.data.decode()
    assert signed_in.head("/sign-out").status_code == 200
    assert signed_in.get("/account").status_code == 200
    assert count(app, LoginSession) == 1
    assert audit_events(app, "user.sign_out") == []


def test_WEB_02_get_sign_out_when_signed_out_goes_to_sign_in(client):
    """GET /sign-out without a session redirects to the sign-in page."""
    response = client.get("/sign-out")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in"


def test_WEB_02_get_of_a_reset_link_does_not_use_it(app, client, user, mailbox):
    """Opening a reset link (or a mail scanner prefetching it) leaves it usable."""
    link = reset_link(client, mailbox)
    assert client.get(link).status_code == 200
    assert client.head(link).status_code == 200
    response = form_post(client, link, {"password": "a brand new passphrase"})
    assert response.status_code == 303


# WEB-03, BCP-39, BCP-40, BCP-41 ---------------------------------------------------------


def test_WEB_03_security_headers_on_every_html_page(client):
    """Every HTML page carries nosniff, a referrer policy, CSP, frame denial and COOP."""
    for path in PAGES:
        response = client.get(path)
        assert response.mimetype == "text/html", path
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin"), path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
        assert headers["X-Frame-Options"] == "DENY", path
        assert "Strict-Transport-Security" not in headers, path  # http issuer: no HSTS


def test_WEB_03_security_headers_on_signed_in_pages(signed_in):
    """The account pages carry the same headers."""
    for path in ("/account", "/account/password", "/sign-out"):
        headers = signed_in.get(path).headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path


def test_WEB_03_hsts_only_when_the_issuer_is_https(app_factory):
    """An https issuer adds HSTS for a year with subdomains."""
    app = app_factory(issuer=HTTPS)
    response = app.test_client().get("/sign-in", base_url=HTTPS)
    hsts = response.headers["Strict-Transport-Security"]
    max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
    assert max_age >= 31536000
    assert "includeSubDomains" in hsts


def test_BCP_39_framing_is_blocked(client):
    """Login, registration, reset and error pages refuse to be framed."""
    for path in ("/sign-in", "/register", "/forgot-password", "/reset-password/x", "/missing"):
        headers = client.get(path).headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path


def test_BCP_40_csp_forbids_inline_script_and_plugins(client):
    """CSP allows scripts only from this origin and no plugins; pages have no inline script."""
    for path in ("/sign-in", "/register", "/forgot-password", "/missing"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", path
        assert directives["object-src"] == "'none'", path
        assert directives["base-uri"] == "'none'", path
        html = response.data.decode()
        # Scripts only as files of this origin (the passkey button's), never inline.
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert re.search(r'\bsrc="/static/', attributes) and not body.strip(), path
        assert " style=" not in html and " onclick=" not in html, path


def test_BCP_41_no_third_party_resources(signed_in):
    """Pages load and link only same-origin resources."""
    for path in ("/account", "/sign-out", "/account/password"):
        html = signed_in.get(path).data.decode()
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
            if url == "data:,":
                continue  # the empty inline favicon: nothing is fetched
            assert url.startswith("/") and not url.startswith("//"), (path, url)


# SESS-11 -----------------------------------------------------------------------------------


def test_SESS_11_pages_are_never_cached_for_someone_else(signed_in):
    """Every dynamic response, redirects included, says no-store and varies on Cookie."""
    for path in ("/account", "/sign-in", "/account/password", "/", "/missing"):
        response = signed_in.get(path)
        assert response.headers["Cache-Control"] == "no-store", path
        assert "Cookie" in response.headers["Vary"], path


def test_SESS_11_redirect_after_sign_in_is_not_cacheable(client, user):
    """The response that sets the session cookie is not cacheable."""
    response = sign_in(client)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Cookie" in response.headers["Vary"]


def test_SESS_11_static_files_keep_their_own_caching(client):
    """Static assets are not marked no-store (they hold nothing personal)."""
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers.get("Cache-Control") != "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# BCP-43 --------------------------------------------------------------------------------


def test_BCP_43_no_cors_on_browser_pages(signed_in):
    """No Access-Control-Allow-Origin is ever granted to a foreign origin."""
    headers = {"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
    for path in ("/sign-in", "/account", "/account/password"):
        for method in ("GET", "OPTIONS", "POST"):
            response = signed_in.open(path, method=method, headers=headers)
            assert "Access-Control-Allow-Origin" not in response.headers, (method, path)
            assert "Access-Control-Allow-Credentials" not in response.headers, (method, path)


# BCP-44 --------------------------------------------------------------------------------


def failed_sign_in_ip(app, headers):
    client = app.test_client()
    page = client.get("/sign-in")
    data = {"csrf_token": csrf_token(page.data), "email": "x@example.org", "password": "nope nope"}
    client.post("/sign-in", data=data, headers=headers)
    return audit_events(app, "user.sign_in")[-1]["ip"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"},
        {"Forwarded": "for=203.0.113.9"},
    ],
)
def test_BCP_44_forwarded_headers_ignored_without_trusted_proxies(app, headers):
    """With trusted_proxies=0 the client address is the TCP peer, whatever the headers say."""
    assert failed_sign_in_ip(app, headers) == "127.0.0.1"


def test_BCP_44_forwarded_for_used_with_one_trusted_proxy(app_factory):
    """With trusted_proxies=1 the address the proxy appended is the client address."""
    app = app_factory(trusted_proxies=1)
    assert failed_sign_in_ip(app, {"X-Forwarded-For": "203.0.113.9"}) == "203.0.113.9"
    # A client-supplied value before the proxy's own entry is not believed.
    spoofed = {"X-Forwarded-For": "10.0.0.1, 198.51.100.7"}
    assert failed_sign_in_ip(app, spoofed) == "198.51.100.7"


@pytest.mark.parametrize("value", ["not-an-ip", "999.1.1.1", "<script>", "127.0.0.1:80:90"])
def test_BCP_44_unparsable_forwarded_for_falls_back_to_the_peer(app_factory, value):
    """An X-Forwarded-For that is not an address never becomes the client address."""
    app = app_factory(trusted_proxies=1)
    assert failed_sign_in_ip(app, {"X-Forwarded-For": value}) == "127.0.0.1"


def test_BCP_44_forwarded_host_and_proto_do_not_change_links(app_factory):
    """Even behind a trusted proxy, mailed links use the configured issuer."""
    app = app_factory(trusted_proxies=1)
    mailbox = Mailbox(app)
    add_user(app)
    client = app.test_client()
    headers = {
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "444",
        "Host": "evil.test",
    }
    token = csrf_token(client.get("/forgot-password", headers=headers).data)
    data = {"csrf_token": token, "email": "alice@example.org"}
    assert client.post("/forgot-password", data=data, headers=headers).status_code == 303
    body = mailbox.to("alice@example.org")[-1].get_content()
    assert "http://127.0.0.1:8000/reset-password/" in body
    assert "evil" not in body


# WEB-05, WEB-07, WEB-08 ------------------------------------------------------------------


def test_WEB_05_json_endpoints_say_json(client):
    """JSON answers carry a JSON content type and nosniff, never text/html."""
    response = client.get("/healthz", headers={"Accept": "text/html"})
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers
    assert response.get_json() == {"status": "ok"}


def test_WEB_05_html_pages_declare_utf8(client):
    """HTML pages declare their charset."""
    assert client.get("/sign-in").headers["Content-Type"] == "text/html; charset=utf-8"


def test_WEB_07_unsupported_methods_answer_405(client):
    """TRACE and write methods on pages answer 405 with an Allow header."""
    for method in ("TRACE", "PUT", "DELETE", "PATCH"):
        response = client.open("/sign-in", method=method)
        assert response.status_code == 405, method
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert allowed == {"GET", "HEAD", "POST", "OPTIONS"}, method
        assert "Method not allowed" in response.data.decode(), method


def test_WEB_07_options_is_minimal(client):
    """OPTIONS answers with the allowed methods and an empty body."""
    response = client.options("/account")
    assert response.status_code == 200
    assert response.data == b""
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


INTERNAL_PATHS = [
    "/console",
    "/console?__debugger__=yes&cmd=resource&f=style.css",
    "/sign-in?__debugger__=yes&cmd=resource&f=debugger.js",
    "/.git/config",
    "/.env",
    "/static/",
    "/static/../identity/settings.py",
    "/static/%2e%2e/identity/settings.py",
    "/openapi.json",
    "/metrics",
    "/admin.php",
    "/server-status",
]


def test_WEB_08_nothing_internal_is_exposed(client):
    """No debugger, source, listing or metrics is reachable."""
    for path in INTERNAL_PATHS:
        # A client from elsewhere (the test client's default address is loopback, which
        # may read /metrics, as an operator on the host does: tests/functional/test_metrics.py).
        response = client.get(path, environ_base={"REMOTE_ADDR": "203.0.113.7"})
        html = response.data.decode()
        assert "debugger" not in html.lower(), path
        assert "Traceback" not in html and "SECRET" not in html, path
        if path.startswith("/sign-in"):
            assert response.status_code == 200 and "<h1>Sign in</h1>" in html, path
        else:
            assert response.status_code == 404, path
    # The admin console exists, behind the sign-in (and a role, and a second factor).
    assert client.get("/admin").location.endswith("/admin/")
    signed_out = client.get("/admin/")
    assert signed_out.status_code == 302 and signed_out.location.startswith("/sign-in?")


def test_WEB_08_no_debug_mode_and_no_version_banner(app, client):
    """The app is not in debug mode and answers carry no Server or X-Powered-By banner."""
    assert app.debug is False
    response = client.get("/sign-in")
    assert "Server" not in response.headers
    assert "X-Powered-By" not in response.headers
    assert "Werkzeug" not in str(response.headers)


# WEB-15 ----------------------------------------------------------------------------------


def test_WEB_15_body_over_max_content_length_answers_413(app_factory):
    """A body larger than max_content_length is refused with 413."""
    app = app_factory(max_content_length=4096)
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").data)
    data = {"csrf_token": token, "email": "a@example.org", "password": "p" * 5000}
    response = client.post("/sign-in", data=data)
    assert response.status_code == 413
    assert "Request too large" in response.data.decode()


def test_WEB_15_default_limit_refuses_a_two_megabyte_body(client):
    """With the default 1 MiB limit, a 2 MiB form body gets 413."""
    response = client.post(
        "/sign-in",
        data=b"email=a&password=" + b"x" * (2 * 1024 * 1024),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413


def test_WEB_15_many_multipart_fields_are_refused(client):
    """A multipart form with thousands of fields is refused, not parsed."""
    data = {f"f{i}": "x" for i in range(5000)}
    response = client.post("/sign-in", data=data, content_type="multipart/form-data")
    assert response.status_code == 413


@pytest.mark.filterwarnings("ignore:The 'identity_session' cookie is too large")
def test_WEB_15_huge_cookie_is_harmless(client, user):
    """An oversized session cookie is treated as no session, not an error."""
    client.set_cookie("identity_session", "x" * 60_000)
    response = client.get("/account")
    assert response.status_code == 302
    assert cookie_value(client, "identity_session") is None


# Request ids ---------------------------------------------------------------------------


def test_request_id_is_echoed_when_well_formed_and_replaced_otherwise(client):
    """A sane X-Request-ID is echoed; anything else is replaced by our own."""
    good = client.get("/sign-in", headers={"X-Request-ID": "abc-123_XYZ.789"})
    assert good.headers["X-Request-ID"] == "abc-123_XYZ.789"
    bad = client.get("/sign-in", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert re.fullmatch(r"[0-9a-f]{16}", bad.headers["X-Request-ID"])


def test_INPUT_02_not_found_path_is_not_reflected_raw(client):
    """A script in the path of a missing page is never reflected as markup."""
    response = client.get("/<script>alert(1)</script>")
    assert response.status_code == 404
    assert "<script>alert(1)</script>" not in response.data.decode()
