"""``private_key_jwt`` client authentication (RFC 7523 section 2.2, OIDC Core 9).

Authlib verifies the assertion; this module supplies the client's keys (registered ``jwks``
or a bounded fetch of ``jwks_uri``), the accepted audiences, a replay cache shared by all
workers through the database (BCP-35, TOK-18), and a cap on assertion lifetime.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any, cast

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from identity.database import dialect_insert
from identity.errors import InvalidInput
from identity.extensions import db
from identity.models.base import utcnow
from identity.models.oauth import UsedJti
from identity.oauth.clients.fetch import FetchError, fetch_json

# Signature algorithms accepted on client assertions (and advertised in discovery): the
# asymmetric ones only, since clients register public keys.
ASSERTION_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
# The algorithms a client may sign request objects with (RFC 9101): those it may sign
# assertions with, verified with the same registered keys.
REQUEST_OBJECT_ALGORITHMS = ASSERTION_ALGORITHMS
# Assertions are meant to be short-lived; a long-lived one is a replay risk.
MAX_ASSERTION_LIFETIME = 600
JWKS_CACHE_TTL = 300.0
JWKS_REFETCH_INTERVAL = 5.0  # a key set is refetched for an unknown kid at most this often
MAX_ASSERTION_LENGTH = 8192
MAX_JTI_LENGTH = 200


class JwksCache:
    """Fetched client JWKS per jwks_uri, refreshed after a TTL or when a kid is unknown."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._items: dict[str, tuple[float, KeySetSerialization]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str, *, refresh: bool = False) -> KeySetSerialization:
        hit = self._items.get(uri)
        now = time.monotonic()
        if hit is not None and not refresh and now - hit[0] < JWKS_CACHE_TTL:
            return hit[1]
        if hit is not None and refresh and now - hit[0] < JWKS_REFETCH_INTERVAL:
            return hit[1]  # refetch at most every few seconds
        document = fetch_json(uri, allow_private=self.allow_private)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise FetchError("jwks_uri did not return a JWK Set")
        key_set = cast("KeySetSerialization", document)  # an object with a "keys" array
        with self._lock:
            self._items[uri] = (now, key_set)
        return key_set


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str], jwks_cache: JwksCache) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._audiences = audiences
        self.jwks_cache = jwks_cache

    def __call__(self, query_client: Any, request: Any) -> Any:
        assertion = request.form.get("client_assertion")
        if assertion and len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClientError(description="client_assertion is too large")
        try:
            return super().__call__(query_client, request)
        except RecursionError:
            # Authlib parses the claims before checking the signature: deeply nested JSON
            # from anyone must be a client error, not a server error (TOK-06).
            raise InvalidClientError(description="Invalid JWT payload.") from None

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: Any) -> Any:
        """A key resolver: the registered key named by the assertion's ``kid``."""

        def resolve(obj: Any) -> Any:
            try:
                key = client_key(client.meta, obj.headers().get("kid"), self.jwks_cache)
            except InvalidInput as error:
                raise InvalidClientError(description=error.message) from None
            if key is None:
                raise InvalidClientError(description="no registered key matches the assertion")
            return key

        return resolve

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """Authlib's check with the algorithms discovery advertises (joserfc's default
        accepts only its "recommended" RS256 and ES256, refusing PS256 and the others)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp - time.time() > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="client_assertion lives too long")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        """Record the jti; False when it was seen before (any worker, any host)."""
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            return False
        key = f"{claims['sub']}:{jti}"[:300]
        expires = utcnow() + timedelta(seconds=MAX_ASSERTION_LIFETIME + 60)
        # RETURNING, not rowcount: SQLAlchemy reports -1 as the rowcount of an INSERT on
        # psycopg, which refused every assertion on PostgreSQL (BCP-35).
        inserted = db.session.execute(
            dialect_insert(db.session(), UsedJti)
            .values(key=key, expires_at=expires)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(UsedJti.key)
        ).first()
        return inserted is not None


def client_key(meta: dict[str, Any], kid: Any, jwks_cache: JwksCache) -> Any:
    """The client's registered key (``jwks`` or ``jwks_uri``) named by ``kid``, or None. An
    unknown kid makes a ``jwks_uri`` client's keys be fetched again, since the client may
    have rotated them (OIDC-54). Raises InvalidInput when the keys cannot be had."""
    key = _pick(_key_set(meta, jwks_cache, refresh=False), kid)
    if key is None and "jwks_uri" in meta:
        key = _pick(_key_set(meta, jwks_cache, refresh=True), kid)
    return key


def _key_set(meta: dict[str, Any], jwks_cache: JwksCache, *, refresh: bool) -> KeySet:
    try:
        if "jwks" in meta:
            return KeySet.import_key_set(meta["jwks"])  # type: ignore[arg-type]
        if "jwks_uri" in meta:
            return KeySet.import_key_set(jwks_cache.get(meta["jwks_uri"], refresh=refresh))
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("the client's JWKS is not usable") from None
    raise InvalidInput("the client has no keys registered")


def _pick(key_set: KeySet, kid: Any) -> Any:
    if isinstance(kid, str):
        for key in key_set.keys:
            if key.kid == kid:
                return key
        return None
    return key_set.keys[0] if len(key_set.keys) == 1 else None
