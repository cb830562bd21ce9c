"""private_key_jwt client authentication, piece by piece
(identity/oauth/clients/authentication.py): the jwks_uri cache and its refetch limit, the
choice of key by kid, the claim checks with their 30 s leeway and 600 s lifetime cap, and the
jti replay record that outlives the assertion.
Most tests call the module directly with a fake clock and a fake fetch; a few go through the
token endpoint."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from authlib.oauth2.rfc6749 import InvalidClientError
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from identity.errors import InvalidInput
from identity.oauth.clients import authentication as client_auth
from identity.oauth.clients.authentication import JwksCache, PrivateKeyJWT, client_key
from identity.oauth.clients.fetch import FetchError
from tests.oauth.conftest import b64url

JWKS_URI = "https://rp.example.org/jwks.json"
AUDIENCE = "https://id.example.org/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NOW = 2_000_000_000  # a whole second, so that boundaries are exact


class Clock:
    """Stands in for the ``time`` module of client_auth: monotonic() is ours to move."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


class Fetcher:
    """Stands in for fetch_json: serves ``document`` and counts the fetches."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, uri: str, *, allow_private: bool) -> Any:
        self.calls.append((uri, allow_private))
        return self.document


def public(key: Any, kid: str, alg: str = "ES256") -> dict[str, Any]:
    return dict(key.as_dict(private=False), kid=kid, alg=alg, use="sig")


def key_set(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(entries)}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(client_auth, "time", fake)
    return fake


@pytest.fixture
def ec_keys() -> list[Any]:
    return [ECKey.generate_key("P-256") for _ in range(3)]


@pytest.fixture
def fetcher(monkeypatch: pytest.MonkeyPatch, ec_keys: list[Any]) -> Fetcher:
    fake = Fetcher(key_set(public(ec_keys[0], "k1")))
    monkeypatch.setattr(client_auth, "fetch_json", fake)
    return fake


# The jwks_uri cache ---------------------------------------------------------------------


def test_fetched_jwks_are_kept_for_300_seconds(clock, fetcher):
    """A fetched JWK Set serves every lookup for 300 s; at 300 s it is fetched again, with
    the cache's allow_private setting."""
    cache = JwksCache(allow_private=False)
    first = fetcher.document
    assert cache.get(JWKS_URI) == first
    fetcher.document = key_set()
    clock.now = 1299.5
    assert cache.get(JWKS_URI) == first
    clock.now = 1300.0
    assert cache.get(JWKS_URI) == key_set()
    assert fetcher.calls == [(JWKS_URI, False), (JWKS_URI, False)]
    assert JwksCache(allow_private=True).get(JWKS_URI) == key_set()
    assert fetcher.calls[-1] == (JWKS_URI, True)


def test_refetching_on_demand_happens_at_most_every_5_seconds(clock, fetcher):
    """A refresh (an unknown kid) within 5 s of the last fetch is served from the cache; from
    5 s on it fetches, and the TTL then counts from that fetch."""
    cache = JwksCache(allow_private=False)
    first = cache.get(JWKS_URI)
    fetcher.document = key_set()
    clock.now = 1004.5
    assert cache.get(JWKS_URI, refresh=True) == first
    assert len(fetcher.calls) == 1
    clock.now = 1005.0
    assert cache.get(JWKS_URI, refresh=True) == key_set()
    assert len(fetcher.calls) == 2
    clock.now = 1015.0
    assert cache.get(JWKS_URI) == key_set()
    assert len(fetcher.calls) == 2


def test_a_refetch_with_nothing_cached_fetches(clock, fetcher):
    """A refresh asked for before any fetch of that URI fetches it (the 5 s limit counts
    from a fetch that happened)."""
    cache = JwksCache(allow_private=False)
    assert cache.get(JWKS_URI, refresh=True) == fetcher.document
    assert fetcher.calls == [(JWKS_URI, False)]


@pytest.mark.parametrize("document", [[], {}, {"keys": {}}, {"keys": "k1"}, "keys"])
def test_a_jwks_uri_answering_no_jwk_set_is_refused_and_not_cached(clock, fetcher, document):
    """A document that is not a JWK Set is a FetchError, and the next lookup fetches again."""
    cache = JwksCache(allow_private=False)
    good = fetcher.document
    fetcher.document = document
    with pytest.raises(FetchError):
        cache.get(JWKS_URI)
    fetcher.document = good
    assert cache.get(JWKS_URI) == good
    assert len(fetcher.calls) == 2


# Choosing the key -----------------------------------------------------------------------


def test_BCP_35_kid_picks_the_registered_key_it_names(ec_keys):
    """With several registered keys, the assertion's kid chooses among them; a kid that
    names none finds no key, even when the client registered a single one."""
    cache = JwksCache(allow_private=False)
    both = {"jwks": key_set(public(ec_keys[0], "k1"), public(ec_keys[1], "k2"))}
    assert client_key(both, "k2", cache).kid == "k2"
    assert client_key(both, "k1", cache).kid == "k1"
    assert client_key(both, "k3", cache) is None
    single = {"jwks": key_set(public(ec_keys[0], "k1"))}
    assert client_key(single, "k2", cache) is None


def test_BCP_35_without_a_kid_only_a_single_registered_key_is_used(ec_keys):
    """An assertion without a (string) kid is checked against the only registered key, and
    against none when the client registered several."""
    cache = JwksCache(allow_private=False)
    single = {"jwks": key_set(public(ec_keys[0], "k1"))}
    both = {"jwks": key_set(public(ec_keys[0], "k1"), public(ec_keys[1], "k2"))}
    assert client_key(single, None, cache).kid == "k1"
    assert client_key(single, 7, cache).kid == "k1"
    assert client_key(both, None, cache) is None
    assert client_key(both, ["k1"], cache) is None


def test_clients_without_usable_keys_get_an_input_error():
    """No keys registered, or a registered JWK Set without keys, is InvalidInput (an
    invalid_client answer), not a crash."""
    cache = JwksCache(allow_private=False)
    with pytest.raises(InvalidInput, match="no keys registered"):
        client_key({}, "k1", cache)
    with pytest.raises(InvalidInput, match="not usable"):
        client_key({"jwks": {}}, "k1", cache)


def test_OIDC_54_an_unknown_kid_makes_jwks_uri_keys_be_fetched_again(clock, fetcher, ec_keys):
    """Known kids are served from the cache; a kid the cached set lacks (the client rotated
    its key) fetches the set again, at most every 5 s."""
    cache = JwksCache(allow_private=False)
    meta = {"jwks_uri": JWKS_URI}
    assert client_key(meta, "k1", cache).kid == "k1"
    clock.now = 1010.0
    assert client_key(meta, "k1", cache).kid == "k1"
    assert len(fetcher.calls) == 1
    fetcher.document = key_set(public(ec_keys[1], "k2"))
    clock.now = 1020.0
    assert client_key(meta, "k2", cache).kid == "k2"
    assert len(fetcher.calls) == 2
    clock.now = 1021.0
    assert client_key(meta, "k3", cache) is None
    assert len(fetcher.calls) == 2


# Claims and replay ----------------------------------------------------------------------


def authenticator() -> PrivateKeyJWT:
    return PrivateKeyJWT([AUDIENCE], JwksCache(allow_private=False))


def claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": "client-1",
        "sub": "client-1",
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 60,
        "jti": secrets.token_urlsafe(16),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def accepted(auth: PrivateKeyJWT, values: dict[str, Any]) -> bool:
    try:
        auth.verify_claims(values)
    except InvalidClientError:
        return False
    return True


@pytest.fixture
def frozen(app):
    """An app context at the whole second NOW, the clock stopped."""
    with app.app_context(), time_machine.travel(datetime.fromtimestamp(NOW, UTC), tick=False):
        yield


def test_TOK_08_assertion_expiry_has_30_seconds_of_leeway(frozen):
    """An assertion is accepted until 30 s after its exp, and so is one issued (iat, nbf)
    up to 30 s in the future; one second more is refused."""
    auth = authenticator()
    assert accepted(auth, claims(exp=NOW - 29))
    assert not accepted(auth, claims(exp=NOW - 30))
    assert accepted(auth, claims(iat=NOW + 30, nbf=NOW + 30))
    assert not accepted(auth, claims(nbf=NOW + 31))
    assert not accepted(auth, claims(iat=NOW + 31))


def test_TOK_08_assertion_lifetime_is_capped_at_600_seconds(frozen):
    """An assertion may live 600 s from now, not one second more."""
    auth = authenticator()
    assert accepted(auth, claims(exp=NOW + 600))
    with pytest.raises(InvalidClientError, match="lives too long"):
        auth.verify_claims(claims(exp=NOW + 601))
    with pytest.raises(InvalidClientError):
        auth.verify_claims(claims(exp="soon"))


def test_BCP_35_only_the_servers_own_audiences_are_accepted(frozen):
    """aud must name one of the audiences the authenticator was built with."""
    auth = authenticator()
    assert accepted(auth, claims(aud=AUDIENCE))
    assert not accepted(auth, claims(aud="https://elsewhere.example.org/oauth/token"))
    assert not accepted(auth, claims(aud=None))


@pytest.mark.parametrize("jti", [None, 5, ["a"], "", "j" * 201])
def test_BCP_35_a_jti_must_be_a_string_of_1_to_200_characters(frozen, jti):
    """A missing, non-string, empty or over-long jti never authenticates."""
    auth = authenticator()
    assert not accepted(auth, claims(jti=jti))
    if jti is not None:
        assert auth.validate_jti(claims(), jti) is False


def test_BCP_35_a_jti_counts_once_per_client(frozen):
    """A 200-character jti works once for its client; another client may use the same
    value."""
    auth = authenticator()
    jti = "j" * 200
    assert auth.validate_jti(claims(), jti) is True
    assert auth.validate_jti(claims(), jti) is False
    assert auth.validate_jti(claims(sub="client-2"), jti) is True
    first = claims()
    assert accepted(auth, first)
    assert not accepted(auth, first)


def test_the_replay_record_key_is_cut_to_its_300_character_column(frozen):
    """The record's key is "sub:jti" cut to the column's 300 characters, so that even an
    unusually long pair is stored (PostgreSQL refuses longer values) rather than failing
    with a server error; pairs alike in their first 300 characters count as one."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models.oauth import UsedJti

    auth = authenticator()
    sub = "c" * 150
    assert UsedJti.__table__.c.key.type.length == 300
    assert auth.validate_jti(claims(sub=sub), "j" * 199 + "a") is True
    assert db.session.execute(select(UsedJti.key)).scalars().all() == [f"{sub}:" + "j" * 149]
    assert auth.validate_jti(claims(sub=sub), "j" * 199 + "b") is False


def test_TOK_18_the_purge_keeps_a_jti_while_its_assertion_is_usable(app):
    """The replay record outlives the longest-lived assertion (600 s plus 30 s of leeway):
    a purge run just before that moment keeps it, so the replay is still refused."""
    from identity.extensions import db
    from identity.maintenance import purge

    auth = authenticator()
    assertion = claims(exp=NOW + 600)
    with app.app_context():
        with time_machine.travel(datetime.fromtimestamp(NOW, UTC), tick=False):
            assert accepted(auth, assertion)
        with time_machine.travel(datetime.fromtimestamp(NOW + 629, UTC), tick=False):
            purge(db.session, session_idle_timeout=1800)
            assert not accepted(auth, assertion)


# Resolving the key and checking the signature -------------------------------------------


def resolver_for(meta: dict[str, Any], kid: Any) -> Any:
    resolve = authenticator().resolve_client_public_key(SimpleNamespace(meta=meta))
    return resolve(SimpleNamespace(headers=lambda: {"kid": kid} if kid else {}))


def test_BCP_35_the_resolver_returns_the_key_or_refuses_as_invalid_client(ec_keys, monkeypatch):
    """The registered key named by kid is used; no matching key, or keys that cannot be
    had, is invalid_client with a reason."""
    meta = {"jwks": key_set(public(ec_keys[0], "k1"))}
    assert resolver_for(meta, "k1").kid == "k1"
    with pytest.raises(InvalidClientError, match="no registered key matches"):
        resolver_for(meta, "k2")
    with pytest.raises(InvalidClientError, match="no keys registered"):
        resolver_for({}, "k1")

    def unreachable(uri: str, *, allow_private: bool) -> Any:
        raise FetchError("cannot resolve rp.example.org")

    monkeypatch.setattr(client_auth, "fetch_json", unreachable)
    with pytest.raises(InvalidClientError, match="cannot resolve"):
        resolver_for({"jwks_uri": JWKS_URI}, "k1")


def test_BCP_35_assertions_are_verified_with_the_advertised_algorithms(frozen, ec_keys):
    """An assertion signed by the registered key verifies (PS256 too, which joserfc alone
    would refuse); a signature by another key is invalid_client."""
    auth = authenticator()
    rsa = RSAKey.generate_key(2048)
    meta = {"jwks": key_set(public(ec_keys[0], "k1"), public(rsa, "r1", "PS256"))}
    resolve = auth.resolve_client_public_key(SimpleNamespace(meta=meta))
    ok = jwt.encode({"alg": "ES256", "kid": "k1"}, claims(), ec_keys[0])
    assert auth.process_assertion_claims(ok, resolve)["sub"] == "client-1"
    ps256 = jwt.encode({"alg": "PS256", "kid": "r1"}, claims(), rsa, algorithms=["PS256"])
    assert auth.process_assertion_claims(ps256, resolve)["sub"] == "client-1"
    forged = jwt.encode({"alg": "ES256", "kid": "k1"}, claims(), ec_keys[1])
    with pytest.raises(InvalidClientError):
        auth.process_assertion_claims(forged, resolve)
    expired = jwt.encode({"alg": "ES256", "kid": "k1"}, claims(exp=NOW - 60), ec_keys[0])
    with pytest.raises(InvalidClientError):
        auth.process_assertion_claims(expired, resolve)


# Through the token endpoint -------------------------------------------------------------


def assertion_request(browser: Any, assertion: str | None, **data: str) -> Any:
    body = {"grant_type": "client_credentials", **data}
    if assertion is not None:
        body.update(client_assertion_type=ASSERTION_TYPE, client_assertion=assertion)
    return browser.post("/oauth/token", data=body)


def signed(client_id: str, key: Any, kid: str, issuer: str) -> str:
    now = int(time.time())
    values = {
        "iss": client_id,
        "sub": client_id,
        "aud": issuer + "/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode({"alg": "ES256", "kid": kid}, values, key)


@pytest.fixture
def uri_client(fast_keys, app, make_client, clock, fetcher) -> Any:
    return make_client(
        "Service",
        auth_method="private_key_jwt",
        jwks_uri=JWKS_URI,
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="roles",
    )


def test_OIDC_54_a_rotated_jwks_uri_key_is_accepted_at_once(
    app, client, uri_client, clock, fetcher, ec_keys
):
    """A jwks_uri client signs with its key, rotates it, and its next assertion (new kid)
    is accepted without waiting for the cache to expire; the old key then no longer
    works."""
    issuer = str(app.extensions["identity"].settings.issuer)
    old = signed(uri_client.client_id, ec_keys[0], "k1", issuer)
    assert assertion_request(client, old).status_code == 200
    fetcher.document = key_set(public(ec_keys[1], "k2"))
    clock.now += 10
    new = signed(uri_client.client_id, ec_keys[1], "k2", issuer)
    response = assertion_request(client, new)
    assert response.status_code == 200, response.json
    retired = signed(uri_client.client_id, ec_keys[0], "k1", issuer)
    assert assertion_request(client, retired).json["error"] == "invalid_client"
    assert len(fetcher.calls) == 2


def test_assertions_over_8192_characters_are_refused_before_parsing(client, uri_client):
    """8192 characters reach the JWT parser; 8193 are refused for their size alone."""
    at_cap = assertion_request(client, "a" * 8192)
    assert at_cap.json["error"] == "invalid_client"
    assert "too large" not in at_cap.json.get("error_description", "")
    over = assertion_request(client, "a" * 8193)
    assert over.json == {
        "error": "invalid_client",
        "error_description": "client_assertion is too large",
    }


def test_TOK_06_deeply_nested_assertion_claims_are_invalid_client(frozen):
    """Authlib reads the claims before checking the signature: claims nested deeply enough
    to exhaust Python's recursion are refused as invalid_client, not let through to the
    next authentication method nor turned into a server error."""
    nested = "[" * 2500 + "]" * 2500
    assertion = f"{b64url(json.dumps({'alg': 'ES256'}))}.{b64url(nested)}.{b64url(b's' * 64)}"
    assert len(assertion) <= 8192
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    def query_client(client_id: str) -> Any:
        raise AssertionError("no client is looked up for an unreadable assertion")

    with pytest.raises(InvalidClientError, match="Invalid JWT payload"):
        authenticator()(query_client, SimpleNamespace(form=form))


def test_a_private_key_jwt_client_without_an_assertion_is_refused_cleanly(client, uri_client):
    """Naming the client without any credential is 401 invalid_client, not a server
    error."""
    response = assertion_request(client, None, client_id=uri_client.client_id)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
