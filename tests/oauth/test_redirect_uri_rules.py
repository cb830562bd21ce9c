"""The two pure functions behind redirect URI safety: check_redirect_uri decides what may be
registered (BCP-03), redirect_uri_matches what a request may use (BCP-01, BCP-02); and the
client's own checks Authlib and logout call, over its registered redirect and post-logout
URIs. No app: each rule is checked where it lives, at its boundaries."""

from __future__ import annotations

import uuid

import pytest

from identity.oauth.clients.metadata import InvalidRedirectUri, check_redirect_uri
from identity.oauth.clients.service import ClientView, redirect_uri_matches

# check_redirect_uri ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.test/cb",
        "https://rp.test:8443/cb?tenant=1",
        "https://192.0.2.1/cb",
        "https://rp.test/cb!",  # 0x21, the first character past the control range
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
        "com.example.app:/callback",
    ],
)
def test_BCP_03_safe_redirect_uris_are_kept_as_given(uri):
    """https, loopback http and reverse-domain private schemes pass, unchanged."""
    assert check_redirect_uri(uri) == uri


def test_BCP_03_redirect_uris_may_be_2000_characters_long():
    """2000 characters are accepted; 2001 are refused."""
    base = "https://rp.test/"
    assert check_redirect_uri(base + "a" * (2000 - len(base))) is not None
    with pytest.raises(InvalidRedirectUri, match="non-empty strings"):
        check_redirect_uri(base + "a" * (2001 - len(base)))


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (None, "non-empty strings"),
        (5, "non-empty strings"),
        (["https://rp.test/cb"], "non-empty strings"),
        ("", "non-empty strings"),
        (" https://rp.test/cb", "whitespace or control"),
        ("https://rp.test/cb\u00a0", "whitespace or control"),  # stripped, yet >= 0x21
        ("https://rp.test/c b", "whitespace or control"),
        ("https://rp.test/cb\x00", "whitespace or control"),
        ("https://rp.test/cb\x7f", "whitespace or control"),
        ("https://rp.test\\@evil.test/cb", "whitespace or control"),
        ("https://rp.test/*", "wildcards"),
        ("https://*.rp.test/cb", "wildcards"),
        ("/cb", "must be absolute"),
        ("HTTPS://rp.test/cb", "scheme not allowed"),
        ("javascript:alert(1)", "scheme not allowed"),
        ("data:text/html,x", "scheme not allowed"),
        ("myapp:/cb", "scheme not allowed"),
        ("https://rp.test/cb#", "fragment"),
        ("https://rp.test/cb#frag", "fragment"),
        ("https://user@rp.test/cb", "user info"),
        ("https://user:pw@rp.test/cb", "user info"),
        ("https://:pw@rp.test/cb", "user info"),
        ("https:///cb", "no valid host"),
        ("https://rp_test.example/cb", "no valid host"),
        ("https://rp.test:99999/cb", "invalid port"),
        ("https://rp.test:abc/cb", "invalid port"),
        ("http://rp.test/cb", "only allowed for loopback"),
        ("http://10.0.0.1/cb", "only allowed for loopback"),
        ("http:///cb", "only allowed for loopback"),  # no host at all
        ("http:/cb", "only allowed for loopback"),
    ],
)
def test_BCP_03_unsafe_redirect_uris_are_refused_with_the_reason(uri, reason):
    """Each unsafe URI is refused as invalid_redirect_uri, saying why."""
    with pytest.raises(InvalidRedirectUri, match=reason):
        check_redirect_uri(uri)


def test_BCP_03_localhost_is_refused_with_the_loopback_address_to_use():
    """http://localhost is refused (RFC 8252 8.3), and the error names the URI to use."""
    with pytest.raises(InvalidRedirectUri, match=r"use http://127\.0\.0\.1:8080/cb\?x=1 instead"):
        check_redirect_uri("http://localhost:8080/cb?x=1")


def test_BCP_03_localhost_with_a_malformed_port_is_refused_with_the_address_to_use():
    """A malformed port does not break the advice: the loopback URI is named without it."""
    with pytest.raises(InvalidRedirectUri, match=r"use http://127\.0\.0\.1/cb instead"):
        check_redirect_uri("http://localhost:abc/cb")


def test_BCP_03_private_schemes_can_be_switched_off():
    """Where private-use schemes are not allowed (post-logout URIs), they are refused."""
    with pytest.raises(InvalidRedirectUri, match="scheme not allowed"):
        check_redirect_uri("com.example.app:/callback", allow_private_scheme=False)
    assert check_redirect_uri("https://rp.test/cb", allow_private_scheme=False)


# redirect_uri_matches -------------------------------------------------------------------

REGISTERED = ["https://rp.test/cb", "http://127.0.0.1:8080/cb", "http://[::1]:8080/cb"]


@pytest.mark.parametrize(
    "candidate",
    [
        "https://rp.test/cb/",
        "https://rp.test/CB",
        "https://RP.test/cb",
        "https://rp.test:443/cb",
        "https://rp.test/cb?x=1",
        "https://rp.test/cb#",
        "https://rp.test/%63b",
        "http://rp.test/cb",
        "https://rp.test:8443/cb",
    ],
)
def test_BCP_01_a_redirect_uri_must_be_registered_character_for_character(candidate):
    """Only the registered string itself matches an https URI: no normalisation at all."""
    assert redirect_uri_matches(REGISTERED, "https://rp.test/cb") is True
    assert redirect_uri_matches(REGISTERED, candidate) is False


@pytest.mark.parametrize(
    "candidate",
    [
        "http://127.0.0.1:9000/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:1/cb",
        "http://127.0.0.1:65535/cb",
        "http://[::1]:9000/cb",
        "http://[::1]/cb",
    ],
)
def test_BCP_02_a_loopback_uri_may_use_any_valid_port(candidate):
    """Ports 1 to 65535, or none, on the registered loopback address and path."""
    assert redirect_uri_matches(REGISTERED, candidate) is True


@pytest.mark.parametrize(
    "candidate",
    [
        "http://127.0.0.1:0/cb",
        "http://127.0.0.1:65536/cb",
        "http://127.0.0.1:abc/cb",
        "http://127.0.0.1:/cb",
        "http://127.0.0.1:08080/cb",
        "http://127.0.0.1:9000/cb2",
        "http://127.0.0.1:9000/cb?x=1",
        "http://127.0.0.1:9000/cb#frag",
        "https://127.0.0.1:9000/cb",
        "http://127.0.0.2:9000/cb",
        "http://localhost:9000/cb",
        "http://user@127.0.0.1:9000/cb",
        "http://[::1]:9000/cb2",
        "http://[0:0:0:0:0:0:0:1]:9000/cb",
    ],
)
def test_BCP_02_only_the_port_of_a_loopback_uri_may_change(candidate):
    """Any other difference (port out of range or spelled oddly, path, query, fragment,
    scheme, address, user info) is refused."""
    assert redirect_uri_matches(REGISTERED, candidate) is False


def test_BCP_02_the_query_of_a_loopback_uri_must_match_too():
    """A registered query must come back identical, with the port free."""
    registered = ["http://127.0.0.1:8080/cb?x=1"]
    assert redirect_uri_matches(registered, "http://127.0.0.1:9000/cb?x=1") is True
    assert redirect_uri_matches(registered, "http://127.0.0.1:9000/cb?x=2") is False
    assert redirect_uri_matches(registered, "http://127.0.0.1:9000/cb") is False


def test_BCP_02_https_loopback_uris_get_no_port_freedom():
    """Port freedom is for registered http loopback URIs only: an https one must match
    exactly, and an http request does not match it on another port."""
    registered = ["https://127.0.0.1:8443/cb"]
    assert redirect_uri_matches(registered, "https://127.0.0.1:8443/cb") is True
    assert redirect_uri_matches(registered, "https://127.0.0.1:9000/cb") is False
    assert redirect_uri_matches(registered, "http://127.0.0.1:9000/cb") is False
    assert redirect_uri_matches(registered, "http://127.0.0.1:8443/cb") is False


# The client's own checks ----------------------------------------------------------------


def client_with(**meta: list[str]) -> ClientView:
    return ClientView(pk=uuid.uuid4(), client_id="client-1", name="RP", meta=meta)


def test_BCP_01_a_client_checks_redirect_uris_against_its_own_registration():
    """The client Authlib asks (check_redirect_uri) answers with redirect_uri_matches over
    its own registered URIs, loopback port freedom included; a client with none matches
    nothing."""
    client = client_with(redirect_uris=REGISTERED)
    assert client.check_redirect_uri("https://rp.test/cb") is True
    assert client.check_redirect_uri("http://127.0.0.1:9000/cb") is True
    assert client.check_redirect_uri("https://rp.test/cb/") is False
    assert client_with().check_redirect_uri("https://rp.test/cb") is False


def test_OIDC_61_a_post_logout_uri_must_be_one_the_client_registered_exactly():
    """Logout follows only a post-logout URI this client registered, character for
    character: no loopback port freedom, no added query, and a redirect URI is not a
    post-logout URI."""
    client = client_with(
        redirect_uris=["https://rp.test/cb"],
        post_logout_redirect_uris=["https://rp.test/bye", "http://127.0.0.1:8080/bye"],
    )
    assert client.check_post_logout_redirect_uri("https://rp.test/bye") is True
    assert client.check_post_logout_redirect_uri("http://127.0.0.1:8080/bye") is True
    for uri in (
        "https://rp.test/bye?x=1",
        "https://rp.test/bye/",
        "http://127.0.0.1:9000/bye",
        "https://rp.test/cb",
        "",
    ):
        assert client.check_post_logout_redirect_uri(uri) is False
    assert client_with().check_post_logout_redirect_uri("https://rp.test/bye") is False
