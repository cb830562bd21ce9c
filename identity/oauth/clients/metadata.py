"""Validation of client metadata (RFC 7591 names), shared by the CLI and dynamic registration.

Pure functions. Redirect URIs are compared as exact strings later, so here they only have
to be safe to register (BCP-03, INPUT-03): absolute, no fragment, no user info, no wildcard,
https, http only on a loopback address (RFC 8252 section 7.3), or a private-use scheme in
reverse-domain form (RFC 8252 section 7.1).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from identity.auth.methods import ACRS
from identity.exceptions import InvalidInput

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant type name  # nosec B105
CLIENT_CREDENTIALS = "client_credentials"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS, DEVICE_CODE)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# Stored beside the RFC 7591 metadata, never shown in registration responses: the methods a
# client may authenticate with. A secret client registered without a method accepts both
# secret methods (common relying parties send the secret in the body by default).
ACCEPTED_AUTH_METHODS = "accepted_auth_methods"
INTERNAL_METADATA = frozenset({ACCEPTED_AUTH_METHODS})
LOOPBACK_HOSTS = ("127.0.0.1", "::1")
MAX_URI_LENGTH = 2000
MAX_REQUEST_URIS = 10
MAX_CLIENT_NAME_LENGTH = 200
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+$")
_FORBIDDEN_SCHEMES = {"javascript", "data", "vbscript", "file", "blob", "about", "filesystem"}


class InvalidClientMetadata(InvalidInput):
    """RFC 7591 ``invalid_client_metadata``."""

    code = "invalid_client_metadata"


class InvalidRedirectUri(InvalidClientMetadata):
    code = "invalid_redirect_uri"


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _valid_host(host: str) -> bool:
    """A DNS name in ASCII (IDNs as punycode) or an IP literal; nothing else may reach a
    Location or a CSP header built from the URI."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


# More branches than PLR0912 allows: one per rule a redirect URI must follow, top to bottom.
BACKCHANNEL_LOOPBACK = (*LOOPBACK_HOSTS, "localhost")


def check_backchannel_logout_uri(uri: Any, name: str = "backchannel_logout_uri") -> str:
    """OIDC Back-Channel Logout 2.2: an absolute https URI without a fragment (http only for
    a loopback host, where delivery also needs IDENTITY_BACKCHANNEL_LOGOUT_ALLOW_PRIVATE).
    The same rules hold for ``security_event_uri`` (RFC 8935 push endpoint)."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH or uri != uri.strip():
        raise InvalidClientMetadata(f"{name} must be an absolute URI")
    parts = urlsplit(uri)
    loopback = parts.hostname in BACKCHANNEL_LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InvalidClientMetadata(f"{name} must use https")
    if not parts.hostname or parts.fragment or "#" in uri or parts.username or parts.password:
        raise InvalidClientMetadata(f"{name} must have a host and no fragment or user info")
    return uri


def check_redirect_uri(uri: Any, *, allow_private_scheme: bool = True) -> str:  # noqa: PLR0912
    """A redirect URI that is safe to register, or InvalidRedirectUri."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise InvalidRedirectUri("redirect URIs must be non-empty strings")
    if uri != uri.strip() or any(ch <= " " or ch in "\\\x7f" for ch in uri):
        raise InvalidRedirectUri(f"redirect URI contains whitespace or control characters: {uri!r}")
    if "*" in uri:
        raise InvalidRedirectUri(f"wildcards are not allowed: {uri}")
    parts = urlsplit(uri)
    scheme = parts.scheme
    if not scheme:
        raise InvalidRedirectUri(f"redirect URI must be absolute: {uri}")
    # urlsplit lowercases the scheme, so compare the raw text: redirect URIs are matched
    # as exact strings later (BCP-01), and "HTTPS://" would never be what a client sends.
    if uri.partition(":")[0] != scheme or scheme in _FORBIDDEN_SCHEMES:
        raise InvalidRedirectUri(f"redirect URI scheme not allowed: {uri}")
    if "#" in uri:
        raise InvalidRedirectUri(f"redirect URI must not contain a fragment: {uri}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidRedirectUri(f"redirect URI must not contain user info: {uri}")
    if scheme == "https":
        if not parts.hostname or not _valid_host(parts.hostname):
            raise InvalidRedirectUri(f"redirect URI has no valid host: {uri}")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise InvalidRedirectUri(f"redirect URI has an invalid port: {uri}") from None
        return uri
    if scheme == "http":
        if parts.hostname == "localhost":
            # RFC 8252 section 8.3: "localhost" may resolve to another address than the
            # loopback interface the app listens on; the literal address cannot.
            raise InvalidRedirectUri(
                "redirect URI must use the loopback address, not localhost (RFC 8252 "
                f"section 8.3): use {_on_loopback(parts, '127.0.0.1')} instead of {uri}"
            )
        if not is_loopback_host(parts.hostname):
            raise InvalidRedirectUri(f"http is only allowed for loopback addresses: {uri}")
        return uri
    if allow_private_scheme and _PRIVATE_SCHEME.match(scheme):
        return uri  # native app, e.g. com.example.app:/callback
    raise InvalidRedirectUri(f"redirect URI scheme not allowed: {uri}")


def _on_loopback(parts: SplitResult, address: str) -> str:
    """The URI with ``address`` in place of its host name (port, path and query kept)."""
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = address if port is None else f"{address}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_https_uri(name: str, uri: Any) -> str:
    """Informational URIs shown to users (logo, policy, terms): https only (INPUT-03)."""
    if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH:
        raise InvalidClientMetadata(f"{name} must be a string")
    parts = urlsplit(uri)
    if (
        uri != uri.strip()
        or parts.scheme != "https"
        or not parts.hostname
        or not _valid_host(parts.hostname)
        or parts.username is not None
        or any(ch <= " " for ch in uri)  # a space or a control character
    ):
        raise InvalidClientMetadata(f"{name} must be an https URL")
    return uri


def _string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings")
    return list(dict.fromkeys(value))


# Longer than PLR0912 and PLR0915 allow: one field after another, each check next to the
# value it stores; split up, the order of the checks (which error a refused registration
# reports) would be harder to follow.
def normalize_metadata(  # noqa: PLR0912, PLR0915
    raw: dict[str, Any],
    *,
    known_scopes: set[str],
    signing_algs: tuple[str, ...],
    default_id_token_alg: str,
    request_object_algs: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Validate client metadata and fill in defaults; returns the stored form."""
    if not isinstance(raw, dict):
        raise InvalidClientMetadata("client metadata must be a JSON object")
    meta: dict[str, Any] = {}

    method = raw.get("token_endpoint_auth_method") or "client_secret_basic"
    if method not in AUTH_METHODS:
        raise InvalidClientMetadata(f"unsupported token_endpoint_auth_method: {method}")
    meta["token_endpoint_auth_method"] = method
    chosen = raw.get("token_endpoint_auth_method")
    meta[ACCEPTED_AUTH_METHODS] = list(SECRET_AUTH_METHODS) if chosen is None else [method]

    grant_types = _string_list("grant_types", raw.get("grant_types", [AUTHORIZATION_CODE]))
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise InvalidClientMetadata(f"unsupported grant_types: {', '.join(unknown)}")
    if method == "none" and CLIENT_CREDENTIALS in grant_types:
        raise InvalidClientMetadata("public clients cannot use client_credentials")
    if not grant_types:
        raise InvalidClientMetadata("grant_types must not be empty")
    meta["grant_types"] = grant_types

    response_types = _string_list(
        "response_types",
        raw.get("response_types", ["code"] if AUTHORIZATION_CODE in grant_types else []),
    )
    if any(rt != "code" for rt in response_types):
        raise InvalidClientMetadata("only the 'code' response type is supported")
    if response_types and AUTHORIZATION_CODE not in grant_types:
        raise InvalidClientMetadata("response_types 'code' needs the authorization_code grant")
    meta["response_types"] = response_types

    redirect_uris = [
        check_redirect_uri(u) for u in _string_list("redirect_uris", raw.get("redirect_uris", []))
    ]
    if AUTHORIZATION_CODE in grant_types and not redirect_uris:
        raise InvalidRedirectUri("the authorization_code grant needs at least one redirect URI")
    meta["redirect_uris"] = redirect_uris
    meta["post_logout_redirect_uris"] = [
        check_redirect_uri(u)
        for u in _string_list("post_logout_redirect_uris", raw.get("post_logout_redirect_uris", []))
    ]
    default_acr = raw.get("default_acr_values")
    if default_acr is not None:
        acrs = _string_list("default_acr_values", default_acr)
        unknown = [v for v in acrs if v not in ACRS]
        if unknown:
            raise InvalidClientMetadata(f"unknown acr values: {', '.join(unknown)}")
        meta["default_acr_values"] = acrs
    backchannel = raw.get("backchannel_logout_uri")
    if backchannel is not None:
        meta["backchannel_logout_uri"] = check_backchannel_logout_uri(backchannel)
        # The server always sends sid when it knows it (OIDC Back-Channel Logout 2.2).
        meta["backchannel_logout_session_required"] = bool(
            raw.get("backchannel_logout_session_required", False)
        )

    events = raw.get("security_event_uri")
    if events is not None:
        # Where the client receives Security Event Tokens (RISC account-purged), RFC 8935.
        meta["security_event_uri"] = check_backchannel_logout_uri(events, "security_event_uri")

    scope = raw.get("scope", "openid profile email")
    if not isinstance(scope, str):
        raise InvalidClientMetadata("scope must be a space-separated string")
    scopes = list(dict.fromkeys(scope.split()))
    unknown = [s for s in scopes if s not in known_scopes]
    if unknown:
        raise InvalidClientMetadata(f"unknown scopes: {', '.join(unknown)}")
    meta["scope"] = " ".join(scopes)

    # The client's public keys: for private_key_jwt and for signed request objects.
    if "jwks" in raw and "jwks_uri" in raw:
        raise InvalidClientMetadata("give jwks or jwks_uri, not both")
    if "jwks" in raw:
        jwks = raw["jwks"]
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise InvalidClientMetadata("jwks must be a JWK Set")
        if any(_has_private_part(k) for k in jwks["keys"]):
            raise InvalidClientMetadata("jwks must hold public keys only")
        meta["jwks"] = jwks
    elif "jwks_uri" in raw:
        meta["jwks_uri"] = check_https_uri("jwks_uri", raw["jwks_uri"])
    elif method == "private_key_jwt":
        raise InvalidClientMetadata("private_key_jwt needs jwks or jwks_uri")

    # Request objects (RFC 9101): where they may be fetched from, and how they are signed.
    if "request_uris" in raw:
        uris = _string_list("request_uris", raw["request_uris"])
        if len(uris) > MAX_REQUEST_URIS:
            raise InvalidClientMetadata(f"at most {MAX_REQUEST_URIS} request_uris")
        meta["request_uris"] = [check_https_uri("request_uris", u) for u in uris]
    if raw.get("request_object_signing_alg") is not None:
        alg = raw["request_object_signing_alg"]
        if alg not in request_object_algs:
            raise InvalidClientMetadata(
                f"request_object_signing_alg must be one of {', '.join(request_object_algs)}"
            )
        meta["request_object_signing_alg"] = alg

    alg = raw.get("id_token_signed_response_alg", default_id_token_alg)
    if alg not in signing_algs:
        raise InvalidClientMetadata(
            f"id_token_signed_response_alg must be one of {', '.join(signing_algs)}"
        )
    meta["id_token_signed_response_alg"] = alg

    for name in ("client_uri", "logo_uri", "policy_uri", "tos_uri"):
        if raw.get(name) is not None:
            meta[name] = check_https_uri(name, raw[name])
    if "contacts" in raw:
        meta["contacts"] = _string_list("contacts", raw["contacts"])[:10]
    return meta


def _has_private_part(key: Any) -> bool:
    return isinstance(key, dict) and any(p in key for p in ("d", "p", "q", "dp", "dq", "qi", "k"))


def clean_client_name(raw: Any, *, required: bool = True) -> str:
    """A printable client name; optional in dynamic registration (RFC 7591 section 2), where
    users are shown the redirect URI's host instead (``Client.display_name``)."""
    if not required and (raw is None or raw == ""):
        return ""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidClientMetadata("client_name is required")
    name = "".join(ch for ch in raw if ch.isprintable()).strip()
    if not name or len(name) > MAX_CLIENT_NAME_LENGTH:
        raise InvalidClientMetadata(
            f"client_name must be 1 to {MAX_CLIENT_NAME_LENGTH} printable characters"
        )
    return name
