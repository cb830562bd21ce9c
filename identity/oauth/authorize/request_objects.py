"""Request objects: authorization requests as signed JWTs (RFC 9101, OIDC Core 6).

By value (``request``) or by reference (``request_uri``, an https URL the client registered
in ``request_uris``, fetched under the same rules as ``jwks_uri``). The object must be
signed by one of the client's registered keys (``jwks`` or ``jwks_uri``) with an asymmetric
algorithm, the client's ``request_object_signing_alg`` when it registered one; unsigned
objects are refused. As RFC 9101 section 5 says, only the parameters inside the object
count; of the URL's, only ``client_id`` (which must match) and, for an error before the
object is trusted, ``redirect_uri`` and ``state``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urldefrag

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import JoseError
from werkzeug.datastructures import MultiDict

from identity.errors import InvalidInput
from identity.oauth.clients.authentication import REQUEST_OBJECT_ALGORITHMS, JwksCache, client_key
from identity.oauth.clients.fetch import fetch
from identity.revocation import CLOCK_LEEWAY

REQUEST_OBJECT_TYPES = ("oauth-authz-req+jwt", "jwt")
MAX_REQUEST_OBJECT_LENGTH = 8192
# Claims of the JWT itself, not authorization request parameters.
JWT_CLAIMS = ("iss", "aud", "exp", "iat", "nbf", "jti", "sub")


class InvalidRequestObjectError(OAuth2Error):  # type: ignore[misc]
    error = "invalid_request_object"


class InvalidRequestUriError(OAuth2Error):  # type: ignore[misc]
    error = "invalid_request_uri"


def uses_request_object(params: MultiDict[str, str], par_prefix: str) -> bool:
    request_uri = params.get("request_uri")
    return "request" in params or bool(request_uri and not request_uri.startswith(par_prefix))


def request_object(client: Any, params: MultiDict[str, str], jwks_cache: JwksCache) -> str:
    """The JWT itself, from ``request`` or fetched from ``request_uri``."""
    if "request" in params and "request_uri" in params:
        raise InvalidRequestError("Send request or request_uri, not both.")
    if "request" in params:
        return params["request"]
    uri = params["request_uri"]
    registered = [urldefrag(u).url for u in client.meta.get("request_uris", [])]
    if urldefrag(uri).url not in registered:
        # require_request_uri_registration: only URLs the client registered are fetched.
        raise InvalidRequestUriError("request_uri is not registered for this client.")
    try:
        body = fetch(
            uri, allow_private=jwks_cache.allow_private, accept="application/oauth-authz-req+jwt"
        )
    except InvalidInput as error:
        raise InvalidRequestUriError(error.message) from None
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidRequestUriError("request_uri did not return a JWT.") from None


def verify(token: str, client: Any, issuer: str, jwks_cache: JwksCache) -> dict[str, Any]:
    """The claims of a request object signed by the client for this server."""
    if len(token) > MAX_REQUEST_OBJECT_LENGTH:
        raise InvalidRequestObjectError("The request object is too large.")
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError, RecursionError):
        raise InvalidRequestObjectError("The request object is not a signed JWT.") from None
    alg, typ = header.get("alg"), header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in REQUEST_OBJECT_TYPES):
        raise InvalidRequestObjectError("The request object has the wrong typ.")
    registered_alg = client.meta.get("request_object_signing_alg")
    if alg not in REQUEST_OBJECT_ALGORITHMS or (registered_alg and alg != registered_alg):
        wanted = registered_alg or "one of " + ", ".join(REQUEST_OBJECT_ALGORITHMS)
        raise InvalidRequestObjectError(f"Request objects must be signed with {wanted}.")
    try:
        key = client_key(client.meta, header.get("kid"), jwks_cache)
    except InvalidInput as error:
        raise InvalidRequestObjectError(error.message) from None
    if key is None:
        raise InvalidRequestObjectError("No registered key of the client matches.")
    try:
        claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
    except (JoseError, ValueError, RecursionError):
        raise InvalidRequestObjectError("The request object's signature is not valid.") from None
    check_claims(claims, client.client_id, issuer)
    return claims


def check_claims(claims: dict[str, Any], client_id: str, issuer: str) -> None:
    if claims.get("iss", client_id) != client_id:
        raise InvalidRequestObjectError("The request object's iss is not the client.")
    aud = claims.get("aud")
    if aud != issuer and not (isinstance(aud, list) and issuer in aud):
        raise InvalidRequestObjectError("The request object's aud must be this server.")
    if claims.get("client_id", client_id) != client_id:
        raise InvalidRequestObjectError("client_id differs inside and outside the object.")
    now = time.time()
    for name in ("exp", "nbf", "iat"):
        if name in claims and not isinstance(claims[name], int | float):
            raise InvalidRequestObjectError(f"The request object's {name} is not a number.")
    if "exp" in claims and claims["exp"] <= now - CLOCK_LEEWAY:
        raise InvalidRequestObjectError("The request object has expired.")
    if claims.get("nbf", 0) > now + CLOCK_LEEWAY or claims.get("iat", 0) > now + CLOCK_LEEWAY:
        raise InvalidRequestObjectError("The request object is not valid yet.")
    if "request" in claims or "request_uri" in claims:
        raise InvalidRequestObjectError("A request object cannot hold another one.")


def as_params(claims: dict[str, Any], client_id: str) -> MultiDict[str, str]:
    """The authorization request the object carries, as request parameters."""
    params: MultiDict[str, str] = MultiDict()
    for name, value in claims.items():
        if name in JWT_CLAIMS or value is None:
            continue
        if isinstance(value, str):
            params[name] = value
        elif isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            params[name] = str(value)
        else:
            params[name] = json.dumps(value)  # the claims parameter is a JSON object
    params["client_id"] = client_id
    return params
