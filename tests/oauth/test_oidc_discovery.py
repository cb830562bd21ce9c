"""OpenID Foundation config plan (oidcc-discovery-endpoint-verification), the logout
discovery module, and the published keys and algorithms (CRYPTO-04, CRYPTO-05)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.oauth.conftest import public_jwks

pytestmark = pytest.mark.usefixtures("fast_keys")
ISSUER = "https://id.example.org"
BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# Scope tokens: RFC 6749 section 3.3 (NQCHAR without space).
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


@pytest.fixture
def app(app_factory: Any) -> Any:
    """A deployment with an https issuer, as the config plan expects."""
    return app_factory(issuer=ISSUER)


@pytest.fixture
def config(client: Any, keys: None) -> dict[str, Any]:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_OIDC_39_discovery_is_json_and_issuer_matches_its_url(client, keys):
    """The document is 200 application/json and its issuer is exactly the base of its URL."""
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    issuer = response.json["issuer"]
    assert issuer == ISSUER
    # OIDC Discovery 4.3: issuer + /.well-known/openid-configuration is where it was found.
    assert f"{issuer}/.well-known/openid-configuration" == ISSUER + response.request.path
    parts = urlsplit(issuer)
    assert parts.scheme == "https" and parts.hostname
    assert not parts.query and not parts.fragment and not issuer.endswith("/")


def test_OIDC_39_oauth_metadata_agrees_with_openid_configuration(client, config):
    """RFC 8414 metadata is published too and says the same as the OpenID document."""
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.json == config


def test_OIDC_39_every_endpoint_is_https_under_the_issuer(config):
    """Every *_endpoint and jwks_uri is an https URL on the issuer
    (CheckDiscEndpointAllEndpointsAreHttps)."""
    urls = {k: v for k, v in config.items() if k.endswith("_endpoint") or k == "jwks_uri"}
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert name in urls
    for name, url in urls.items():
        assert url.startswith(ISSUER + "/"), (name, url)


def test_OIDC_39_advertised_endpoints_exist(client, config):
    """Each advertised endpoint answers on this server instead of 404."""
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ):
        path = urlsplit(config[name]).path
        assert client.get(path).status_code != 404, name


def test_OIDC_39_required_values_are_valid(config):
    """Response types, subject types, scopes, grant types and signing algorithms hold the values
    OIDC Discovery 3 requires."""
    assert config["response_types_supported"] == ["code"]
    assert set(config["subject_types_supported"]) <= {"public", "pairwise"}
    assert config["subject_types_supported"]
    assert "openid" in config["scopes_supported"]
    assert all(SCOPE_TOKEN.match(s) for s in config["scopes_supported"])
    assert "authorization_code" in config["grant_types_supported"]
    assert "implicit" not in config["grant_types_supported"]
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    for flag in (
        "claims_parameter_supported",
        "request_parameter_supported",
        "request_uri_parameter_supported",
    ):
        assert isinstance(config[flag], bool), flag
    assert isinstance(config["claims_supported"], list) and "sub" in config["claims_supported"]


def test_OIDC_39_code_challenge_methods_is_an_array_with_s256_only(config):
    """code_challenge_methods_supported is a JSON array naming S256 and not plain."""
    assert config["code_challenge_methods_supported"] == ["S256"]


def test_OIDC_39_locales_are_bcp47(config):
    """ui_locales_supported and claims_locales_supported are BCP 47 language tags."""
    for name in ("ui_locales_supported", "claims_locales_supported"):
        assert config[name] and all(BCP47.match(tag) for tag in config[name]), name


def test_OIDC_39_jwks_keys_are_well_formed_with_distinct_kids(client, config):
    """The jwks_uri serves a JWK Set whose keys parse, are for signatures and have distinct kids."""
    from joserfc.jwk import KeySet

    jwks = public_jwks(client)
    assert jwks["keys"]
    KeySet.import_key_set(jwks)
    kids = [k["kid"] for k in jwks["keys"]]
    assert len(kids) == len(set(kids))
    for key in jwks["keys"]:
        assert key["use"] == "sig" and key["kty"] in ("RSA", "EC", "OKP")


def test_OIDC_59_end_session_endpoint_is_advertised(config):
    """RP-initiated logout discovery: end_session_endpoint is published on the issuer."""
    assert config["end_session_endpoint"] == ISSUER + "/logout"


def test_OIDC_04_unsigned_id_tokens_are_not_offered(config):
    """alg none is neither advertised for ID tokens nor accepted at registration."""
    from identity.oauth.clients.metadata import InvalidClientMetadata, normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES

    assert "none" not in config["id_token_signing_alg_values_supported"]
    with pytest.raises(InvalidClientMetadata):
        normalize_metadata(
            {
                "redirect_uris": ["https://rp.example.org/cb"],
                "id_token_signed_response_alg": "none",
            },
            known_scopes=KNOWN_SCOPES,
            signing_algs=ALGORITHMS,
            default_id_token_alg="RS256",
        )


def test_OIDC_04_registration_refuses_an_unsigned_id_token_alg(app_factory, fast_keys):
    """Dynamic registration asking for id_token_signed_response_alg=none gets
    invalid_client_metadata."""
    token = "t" * 40
    app = app_factory(issuer=ISSUER, dcr_initial_access_token=token)
    response = app.test_client().post(
        "/oauth/register",
        json={
            "client_name": "Unsigned",
            "redirect_uris": ["https://rp.example.org/cb"],
            "id_token_signed_response_alg": "none",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client_metadata"


def test_OIDC_04_registration_refuses_an_alg_the_server_cannot_sign_with(app_factory, fast_keys):
    """An ID token algorithm with no key behind it (not advertised) is refused at registration, not
    at the token endpoint."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    token = "t" * 40
    app = app_factory(issuer=ISSUER, dcr_initial_access_token=token)
    with app.app_context():
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, ("ES256", "RS256"))
        db.session.commit()
    client = app.test_client()
    advertised = client.get("/.well-known/openid-configuration").json
    assert "EdDSA" not in advertised["id_token_signing_alg_values_supported"]
    response = client.post(
        "/oauth/register",
        json={
            "client_name": "Edwards",
            "redirect_uris": ["https://rp.example.org/cb"],
            "id_token_signed_response_alg": "EdDSA",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_client_metadata"


PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_CRYPTO_04_jwks_holds_public_parts_only_of_strong_keys(client, config):
    """JWKS keys carry no private or symmetric members; RSA is 2048+ bits, EC is P-256, OKP is
    Ed25519; kids are unique."""
    from joserfc.jwk import RSAKey

    jwks = public_jwks(client)
    kids = set()
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert key["kty"] != "oct"
        if key["kty"] == "RSA":
            bits = RSAKey.import_key(key).raw_value.key_size
            assert bits >= 2048
        elif key["kty"] == "EC":
            assert key["crv"] == "P-256"
        else:
            assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
        assert key["kid"] not in kids
        kids.add(key["kid"])
    assert {"ES256", "RS256"} <= {k["alg"] for k in jwks["keys"]}


def test_CRYPTO_05_advertised_algorithms_exclude_none_rsa1_5_and_hmac(config):
    """No signing or auth alg list names none, RSA1_5 or an HS* algorithm."""
    names = [k for k in config if k.endswith("_alg_values_supported")]
    assert "id_token_signing_alg_values_supported" in names
    assert "token_endpoint_auth_signing_alg_values_supported" in names
    for name in names:
        for alg in config[name]:
            assert alg.lower() != "none", name
            assert alg != "RSA1_5", name
            assert not alg.startswith("HS"), name
    for name in ("request_object_signing_alg_values_supported",):
        assert name not in config or "none" not in config[name]


def test_CRYPTO_05_client_secret_jwt_is_not_offered(config):
    """HMAC client assertions keyed with the client secret are not an advertised auth method."""
    for name in (
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ):
        assert "client_secret_jwt" not in config[name]
