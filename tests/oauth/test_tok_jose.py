"""JOSE attacks (TOK-01..08) against every JWT the server verifies: access tokens at
/userinfo and /oauth/introspect, id_token_hint at /authorize and /logout, and
private_key_jwt client assertions at the token endpoint (see JoseHarness).

Logout tokens, DPoP proofs and the admin API do not exist yet; nothing else verifies JWTs.
Each test runs once per kind of token and loops over its variants, to keep setup cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time
import warnings
import zlib
from typing import Any

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization

from tests.oauth.conftest import (
    JWT_BEARER,
    TOKEN_KINDS,
    b64url,
    b64url_decode,
    bearer,
    forge,
    public_jwks,
    server_key,
    unverified,
)

pytestmark = pytest.mark.usefixtures("fast_keys")


def test_genuine_tokens_are_accepted_by_every_verifier(jose):
    """The baseline the attacks below are measured against: genuine tokens pass everywhere."""
    assert all(jose.verdicts("access", jose.access_token).values())
    assert all(jose.verdicts("id", jose.id_token).values())
    for kind in TOKEN_KINDS:
        header, claims, key = jose.genuine(kind)
        token = forge(header, jose.fresh(kind, claims), key)
        assert all(jose.verdicts(kind, token).values()), kind


# TOK-01 alg none ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_01_alg_none_is_refused(jose, kind):
    """alg none in any spelling, with the signature stripped or kept, is refused everywhere."""
    header, claims, key = jose.genuine(kind)
    for alg in ("none", "None", "NONE", "nOnE", ""):
        stripped = forge({**header, "alg": alg}, jose.fresh(kind, claims))
        assert jose.accepted_anywhere(kind, stripped) == [], alg
        signed = forge(header, jose.fresh(kind, claims), key)
        signature = b64url_decode(signed.split(".")[2])
        kept = forge({**header, "alg": alg}, jose.fresh(kind, claims), signature=signature)
        assert jose.accepted_anywhere(kind, kept) == [], alg


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_01_missing_or_altered_signature_is_refused(jose, kind):
    """A token with no signature segment, an empty one, one flipped byte or swapped claims is
    refused."""
    header, claims, key = jose.genuine(kind)
    token = forge(header, jose.fresh(kind, claims), key)
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    swapped = b64url(json.dumps({**jose.fresh(kind, claims), "sub": "someone-else"}))
    for variant in (
        f"{head}.{payload}",
        f"{head}.{payload}.",
        f"{head}.{payload}.{flipped}",
        f"{head}.{swapped}.{signature}",
    ):
        assert jose.accepted_anywhere(kind, variant) == [], variant


# TOK-02 HMAC keyed with a public key --------------------------------------------------


def public_key_forms(key: Any) -> dict[str, bytes]:
    """The forms an attacker might HMAC with: PEM, DER, OpenSSH, PKCS#1 and JWK JSON."""
    raw = key.raw_value
    public = raw.public_key() if hasattr(raw, "public_key") else raw
    enc, fmt = serialization.Encoding, serialization.PublicFormat
    pem = public.public_bytes(enc.PEM, fmt.SubjectPublicKeyInfo)
    forms = {
        "pem": pem,
        "pem-stripped": pem.strip(),
        "der": public.public_bytes(enc.DER, fmt.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(enc.OpenSSH, fmt.OpenSSH),
        "jwk": json.dumps(key.as_dict(private=False)).encode(),
    }
    with contextlib.suppress(ValueError):  # EC keys have no PKCS#1 form
        forms["pkcs1"] = public.public_bytes(enc.PEM, fmt.PKCS1)
    return forms


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_02_hmac_signed_with_public_key_is_refused(jose, kind):
    """HS256/384/512 keyed with the verifier's public key, in every encoding and for every
    key it holds, is refused."""
    header, claims, key = jose.genuine(kind)
    candidates = [(header["kid"], key)]
    if kind != "assertion":
        candidates += [server_key(jose.app, alg) for alg in ("ES256", "RS256")]
    digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    for kid, candidate in candidates:
        for form, secret in public_key_forms(candidate).items():
            for alg, digest in digests.items():
                unsigned = forge({**header, "alg": alg, "kid": kid}, jose.fresh(kind, claims))
                signing_input = unsigned.rsplit(".", 1)[0]
                mac = hmac.new(secret, signing_input.encode(), digest).digest()
                token = f"{signing_input}.{b64url(mac)}"
                assert jose.accepted_anywhere(kind, token) == [], (kid, form, alg)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_02_algorithm_is_pinned_to_the_key(jose, kind):
    """A kid with another asymmetric alg than its key's (RS256, PS256, ES384, EdDSA) is
    refused, whoever signed it."""
    from joserfc.errors import JoseError
    from joserfc.jwk import OKPKey, RSAKey

    header, claims, key = jose.genuine(kind)
    signers = {
        "RS256": RSAKey.generate_key(2048),
        "PS256": RSAKey.generate_key(2048),
        "ES384": key,
        "EdDSA": OKPKey.generate_key("Ed25519"),
    }
    for alg, signer in signers.items():
        if alg == header["alg"]:
            continue
        try:
            token = forge({**header, "alg": alg}, jose.fresh(kind, claims), signer)
        except (JoseError, ValueError, TypeError):
            token = forge({**header, "alg": alg}, jose.fresh(kind, claims), signature=b"x" * 64)
        assert jose.accepted_anywhere(kind, token) == [], alg


# TOK-03 keys from the header, kid injection, malformed headers --------------------------


def attacker_key() -> Any:
    from joserfc.jwk import ECKey

    return ECKey.generate_key("P-256")


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_03_embedded_jwk_header_is_ignored(jose, kind):
    """A token signed by the attacker's key carrying that key in its jwk header is refused,
    whatever kid it names."""
    header, claims, _ = jose.genuine(kind)
    evil = attacker_key()
    for kid in (evil.thumbprint(), header["kid"], None):
        forged_header = {**header, "alg": "ES256", "jwk": evil.as_dict(private=False)}
        if kid is None:
            forged_header.pop("kid")
        else:
            forged_header["kid"] = kid
        token = forge(forged_header, jose.fresh(kind, claims), evil)
        assert jose.accepted_anywhere(kind, token) == [], kid


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_03_jku_and_x5u_are_neither_fetched_nor_trusted(jose, kind, monkeypatch):
    """jku/x5u/x5c naming the attacker's key are refused and nothing is fetched."""
    from identity.oauth.clients import authentication as client_auth
    from identity.oauth.clients import fetch

    fetched: list[str] = []

    def spy(uri: str, **kwargs: Any) -> Any:
        fetched.append(uri)
        raise fetch.FetchError("not in tests")

    monkeypatch.setattr(fetch, "fetch_json", spy)
    monkeypatch.setattr(client_auth, "fetch_json", spy)
    header, claims, _ = jose.genuine(kind)
    evil = attacker_key()
    for member, value in (
        ("jku", "https://attacker.example.net/jwks.json"),
        ("x5u", "https://attacker.example.net/cert.pem"),
        ("x5c", ["MIIBfake"]),
    ):
        for kid in (evil.thumbprint(), header["kid"]):
            forged_header = {**header, "alg": "ES256", "kid": kid, member: value}
            token = forge(forged_header, jose.fresh(kind, claims), evil)
            assert jose.accepted_anywhere(kind, token) == [], (member, kid)
    assert fetched == []


KID_INJECTIONS = [
    "../../../../../../dev/null",
    "/dev/null",
    "' OR '1'='1",
    "x'; DROP TABLE signing_keys; --",
    "%00",
    "\u0000",
    "k" * 5000,
    "",
]


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_03_kid_is_an_opaque_lookup(jose, kind):
    """Path traversal, SQL and oversized kids, with HMAC keyed by empty or NUL bytes (what
    /dev/null would give) or an attacker signature, are refused without a server error."""
    header, claims, _ = jose.genuine(kind)
    for kid in KID_INJECTIONS:
        for secret in (b"", b"\x00"):
            unsigned = forge({**header, "alg": "HS256", "kid": kid}, jose.fresh(kind, claims))
            signing_input = unsigned.rsplit(".", 1)[0]
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            token = f"{signing_input}.{b64url(mac)}"
            assert jose.accepted_anywhere(kind, token) == [], kid
        signed = forge(
            {**header, "alg": "ES256", "kid": kid}, jose.fresh(kind, claims), attacker_key()
        )
        assert jose.accepted_anywhere(kind, signed) == [], kid


MALFORMED_MEMBERS = [
    ("kid", 7),
    ("kid", ["a"]),
    ("kid", {"a": 1}),
    ("typ", 1),
    ("typ", ["JWT"]),
    ("typ", None),
    ("alg", 256),
    ("alg", ["ES256"]),
    ("crit", "exp"),
]


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_03_malformed_header_members_are_refused_cleanly(jose, kind):
    """Header members of the wrong JSON type are a refusal, never a server error."""
    header, claims, key = jose.genuine(kind)
    for name, value in MALFORMED_MEMBERS:
        forged_header = {**header, name: value}
        tokens = [forge(forged_header, jose.fresh(kind, claims), signature=b"s" * 64)]
        if name != "alg":  # genuinely signed too, where the alg still names a signer
            tokens.append(forge(forged_header, jose.fresh(kind, claims), key))
        for token in tokens:
            assert jose.accepted_anywhere(kind, token) == [], (name, value)


MALFORMED_SEGMENTS = ["", "not base64!", b64url("[]"), b64url("null"), b64url('"s"'), b64url("{")]


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_03_malformed_segments_are_refused_cleanly(jose, kind):
    """Headers or payloads that are not base64url JSON objects are a refusal, never a server
    error, even under a valid signature."""
    header, claims, key = jose.genuine(kind)
    good = forge(header, jose.fresh(kind, claims), key)
    head, payload, signature = good.split(".")
    for segment in MALFORMED_SEGMENTS:
        for token in (f"{segment}.{payload}.{signature}", f"{head}.{segment}.{signature}"):
            assert jose.accepted_anywhere(kind, token) == [], token
        if segment not in ("", "not base64!"):
            signed = forge(header, b64url_decode(segment), key)
            assert jose.accepted_anywhere(kind, signed) == [], segment


# TOK-04 JWE where a JWS is expected ----------------------------------------------------


def server_rsa_public(jose: Any) -> Any:
    """The server's published RSA key as an encryption key (anyone can encrypt to it)."""
    from joserfc.jwk import RSAKey

    rsa = next(k for k in public_jwks(jose.browser)["keys"] if k["kty"] == "RSA")
    usable = {k: v for k, v in rsa.items() if k not in ("use", "alg", "key_ops")}
    return rsa["kid"], RSAKey.import_key(usable)


def jwe_to_server(jose: Any, protected: dict[str, Any], payload: bytes, *algorithms: str) -> str:
    from joserfc import jwe

    kid, key = server_rsa_public(jose)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwe.encrypt_compact(
            {"kid": kid, **protected}, payload, key, algorithms=list(algorithms)
        )


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_04_jwe_is_refused_where_a_jws_is_expected(jose, kind):
    """A JWE encrypted to our public RSA key with attacker-chosen claims is refused."""
    header, claims, _ = jose.genuine(kind)
    for alg in ("RSA-OAEP-256", "RSA-OAEP"):
        protected = {"alg": alg, "enc": "A256GCM", "typ": header.get("typ", "JWT")}
        payload = json.dumps(jose.fresh(kind, claims)).encode()
        token = jwe_to_server(jose, protected, payload, alg, "A256GCM")
        assert token.count(".") == 4
        assert jose.accepted_anywhere(kind, token) == [], alg


# TOK-05 crit -----------------------------------------------------------------------------


CRIT_VARIANTS = [
    {"crit": ["exp-custom"], "exp-custom": 1},
    {"crit": ["exp-custom"]},
    {"crit": ["b64"], "b64": False},
    {"crit": ["http://example.net/policy"], "http://example.net/policy": "lax"},
]


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_05_unknown_crit_extension_is_refused(jose, kind):
    """A genuinely signed token whose crit names an extension the verifier does not
    understand is refused (RFC 7515 4.1.11)."""
    header, claims, key = jose.genuine(kind)
    for extra in CRIT_VARIANTS:
        token = forge({**header, **extra}, jose.fresh(kind, claims), key)
        assert jose.accepted_anywhere(kind, token) == [], extra


# TOK-06 oversized and pathological input ---------------------------------------------------


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_06_huge_tokens_are_refused_cheaply(jose, kind):
    """Tokens with a 10 MB header, payload or signature segment are refused fast, without a
    server error."""
    header, claims, key = jose.genuine(kind)
    head, payload, signature = forge(header, jose.fresh(kind, claims), key).split(".")
    # Hints travel in the URL, where front servers cap the request line at a few KB anyway:
    # 1 MB there (10 MB bodies are covered below); 10 MB in headers and bodies.
    big = "A" * ((1 if kind == "id" else 10) * 1024 * 1024)
    start = time.perf_counter()
    for token in (
        f"{big}.{payload}.{signature}",
        f"{head}.{big}.{signature}",
        f"{head}.{payload}.{big}",
    ):
        assert jose.accepted_anywhere(kind, token) == []
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_06_deeply_nested_json_is_refused_cleanly(jose, kind):
    """Deeply nested JSON in the header or in the claims (within the size cap, even genuinely
    signed) is a refusal, never a server error."""
    header, claims, key = jose.genuine(kind)
    nested = "[" * 2500 + "]" * 2500
    in_header = f"{b64url(nested)}.{b64url(json.dumps(claims))}.{b64url(b's' * 64)}"
    in_claims = forge(header, nested.encode(), key)
    in_a_claim = forge(
        header, json.dumps(claims)[:-1].encode() + b', "x": ' + nested.encode() + b"}", key
    )
    for token in (in_header, in_claims, in_a_claim):
        assert jose.accepted_anywhere(kind, token) == []


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_06_jwe_deflate_bomb_is_refused_cheaply(jose, kind):
    """A JWE with zip=DEF that would inflate to 50 MB is refused without being inflated."""
    kid, _ = server_rsa_public(jose)
    bomb = zlib.compress(b"0" * (50 * 1024 * 1024), 9)
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": kid, "zip": "DEF"}
    pieces = [protected, b"k" * 384, b"i" * 12, bomb, b"t" * 16]
    token = ".".join(b64url(json.dumps(p) if isinstance(p, dict) else p) for p in pieces)
    start = time.perf_counter()
    assert jose.accepted_anywhere(kind, token) == []
    assert time.perf_counter() - start < 10


def test_TOK_06_huge_bodies_are_refused_before_parsing(jose):
    """A 10 MB form body at every JWT-verifying endpoint is refused without a server error."""
    big = "A" * (10 * 1024 * 1024)
    for path, data in (
        ("/userinfo", {"access_token": big}),
        ("/oauth/introspect", {"token": big}),
        ("/oauth/token", {"grant_type": "client_credentials", "client_assertion": big}),
        ("/logout", {"id_token_hint": big}),
        ("/authorize", {"id_token_hint": big}),
    ):
        response = jose.browser.post(path, data=data)
        assert response.status_code in (400, 401, 413), (path, response.status_code)


# TOK-07 RSA1_5 --------------------------------------------------------------------------


def raw_answers(jose: Any, kind: str, token: str) -> list[tuple[int, bytes]]:
    """Status and body of each verifier, to compare two refusals byte for byte."""
    from urllib.parse import urlencode

    if kind == "access":
        responses = [
            jose.browser.get("/userinfo", headers=bearer(token)),
            jose.browser.post(
                "/oauth/introspect",
                data={"token": token},
                headers=jose.resource_server.basic_auth(),
            ),
        ]
    elif kind == "id":
        query = urlencode({"id_token_hint": token, "post_logout_redirect_uri": "https://x.test/"})
        responses = [jose.app.test_client().get("/logout?" + query)]
    else:
        responses = [
            jose.browser.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": token,
                },
            )
        ]
    # Request ids differ per request by design; everything else must match.
    import re

    return [(r.status_code, re.sub(rb'"request_id":"[^"]*"', b"", r.data)) for r in responses]


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_07_rsa1_5_jwe_is_refused_with_uniform_errors(jose, kind):
    """RSA1_5 JWEs are refused, and a well-padded and a garbage encrypted key get the same
    answer (no padding oracle)."""
    header, claims, _ = jose.genuine(kind)
    protected = {"alg": "RSA1_5", "enc": "A128GCM", "typ": header.get("typ", "JWT")}
    payload = json.dumps(jose.fresh(kind, claims)).encode()
    good = jwe_to_server(jose, protected, payload, "RSA1_5", "A128GCM")
    parts = good.split(".")
    bad = ".".join([parts[0], b64url(secrets.token_bytes(384)), *parts[2:]])
    assert jose.accepted_anywhere(kind, good) == []
    assert jose.accepted_anywhere(kind, bad) == []
    assert raw_answers(jose, kind, good) == raw_answers(jose, kind, bad)


def test_TOK_07_no_encryption_algorithms_are_advertised(client, keys):
    """Discovery offers no JWE algorithms at all, so none of RSA1_5."""
    config = client.get("/.well-known/openid-configuration").json
    assert [k for k in config if "encryption" in k] == []


# TOK-08 time claims ---------------------------------------------------------------------


TIME_VARIANTS = {
    "nbf-future": {"nbf": 3600},
    "nbf-string": {"nbf": "string"},
    "iat-future": {"iat": 3600},
    "iat-string": {"iat": "string"},
    "exp-string": {"exp": "string"},
    "exp-missing": {"exp": None},
}


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_TOK_08_time_claims_are_enforced(jose, kind):
    """A genuinely signed token not yet valid (nbf or iat an hour ahead) or with malformed or
    missing time claims is refused."""
    header, claims, key = jose.genuine(kind)
    now = int(time.time())
    for label, change in TIME_VARIANTS.items():
        forged = jose.fresh(kind, claims)
        for name, delta in change.items():
            if delta is None:
                forged.pop(name, None)
            elif isinstance(delta, str):
                forged[name] = str(now)
            else:
                forged[name] = now + delta
        token = forge(header, forged, key)
        assert jose.accepted_anywhere(kind, token) == [], label


@pytest.mark.parametrize("kind", ["access", "assertion"])
def test_TOK_08_expired_tokens_are_refused(jose, kind):
    """A genuinely signed access token or assertion that expired an hour ago is refused."""
    header, claims, key = jose.genuine(kind)
    now = int(time.time())
    token = forge(header, {**jose.fresh(kind, claims), "iat": now - 7200, "exp": now - 3600}, key)
    assert jose.accepted_anywhere(kind, token) == []


def test_TOK_08_expired_id_token_is_still_a_valid_hint(jose):
    """ID tokens used as hints need not be unexpired (OIDC Core 3.1.2.1, RP-Initiated Logout
    2): a genuine expired one is accepted."""
    header, claims, key = jose.genuine("id")
    now = int(time.time())
    token = forge(header, {**claims, "iat": now - 7200, "exp": now - 3600}, key)
    assert jose.accepted_anywhere("id", token) == ["authorize_hint", "logout_hint"]


def test_TOK_08_access_token_expiry_leeway_is_small(jose):
    """The real access token works until exp and is refused once exp plus at most 60 s has
    passed."""
    exp = unverified(jose.access_token)[1]["exp"]
    with time_machine.travel(exp - 5, tick=False):
        assert jose.userinfo(jose.access_token)
    with time_machine.travel(exp + 61, tick=False):
        assert jose.accepted_anywhere("access", jose.access_token) == []


def test_TOK_08_assertion_lifetime_is_capped(jose):
    """A client assertion valid for a year is refused (replay window), one for a minute is not."""
    header, _, key = jose.genuine("assertion")
    now = int(time.time())
    long_lived = forge(header, jose.assertion_claims(exp=now + 365 * 86400), key)
    assert jose.client_assertion(long_lived) is False
    short = forge(header, jose.assertion_claims(exp=now + 60), key)
    assert jose.client_assertion(short) is True


def test_TOK_08_assertion_audience_is_checked(jose):
    """A client assertion for another audience is refused; the issuer and the token endpoint
    are accepted (OIDC-57)."""
    header, _, key = jose.genuine("assertion")
    for aud, ok in (
        ("https://attacker.example.net/token", False),
        (jose.issuer + "/userinfo", False),
        (jose.issuer, True),
        (jose.issuer + "/oauth/token", True),
    ):
        token = forge(header, jose.assertion_claims(aud=aud), key)
        assert jose.client_assertion(token) is ok, aud
