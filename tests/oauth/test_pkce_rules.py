"""S256CodeChallenge (identity/oauth/token/grants.py), the PKCE rules, called directly with the
request parts Authlib hands it: who must send a challenge, which method and shape it must
have, and that every verifier failure is invalid_grant (RFC 7636, RFC 9700 2.1.1)."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError

from identity.oauth.token.grants import S256CodeChallenge

VERIFIER = "v" * 43 + "-._~" + "V" * 20
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


def authorization(public: bool = False, **data: Any) -> Any:
    """The grant as validate_code_challenge sees it at /authorize."""
    data = {k: v for k, v in data.items() if v is not None}
    datalist = {k: v if isinstance(v, list) else [v] for k, v in data.items()}
    data = {k: v[0] if isinstance(v, list) else v for k, v in data.items()}
    payload = SimpleNamespace(data=data, datalist=datalist)
    return SimpleNamespace(
        request=SimpleNamespace(payload=payload, client=SimpleNamespace(is_public=public))
    )


def redemption(verifier: str | None, challenge: str | None = CHALLENGE) -> Any:
    """The grant as validate_code_verifier sees it at the token endpoint."""
    code = SimpleNamespace(
        code_challenge=challenge, code_challenge_method="S256" if challenge else None
    )
    form = {} if verifier is None else {"code_verifier": verifier}
    request = SimpleNamespace(form=form, auth_method="client_secret_basic", authorization_code=code)
    return SimpleNamespace(request=request)


def challenge_ok(grant: Any) -> bool:
    S256CodeChallenge(required=True).validate_code_challenge(grant, "https://rp.example.org/cb")
    return True


@pytest.fixture
def optional_pkce(app_factory):
    """An app whose confidential clients may go without PKCE (require_pkce off)."""
    app = app_factory(require_pkce=False)
    with app.app_context():
        yield


@pytest.fixture
def default_pkce(app):
    with app.app_context():
        yield


@pytest.mark.parametrize("public", [False, True])
def test_BCP_11_by_default_every_client_must_send_a_challenge(default_pkce, public):
    """With the default settings a request without code_challenge is refused, whoever the
    client."""
    with pytest.raises(InvalidRequestError, match="PKCE is required"):
        challenge_ok(authorization(public))
    assert challenge_ok(
        authorization(public, code_challenge=CHALLENGE, code_challenge_method="S256")
    )


def test_BCP_11_public_clients_need_a_challenge_even_when_pkce_is_optional(optional_pkce):
    """require_pkce off frees confidential clients only: a public client is still refused;
    a confidential one may go without, but not send a method without a challenge."""
    with pytest.raises(InvalidRequestError, match="PKCE is required"):
        challenge_ok(authorization(public=True))
    assert challenge_ok(authorization(public=False))
    with pytest.raises(InvalidRequestError, match="Missing 'code_challenge'"):
        challenge_ok(authorization(public=False, code_challenge_method="S256"))
    assert challenge_ok(authorization(code_challenge=CHALLENGE, code_challenge_method="S256"))


@pytest.mark.parametrize("method", ["plain", "s256", "S512", "", None])
def test_BCP_12_only_the_s256_method_is_accepted(default_pkce, method):
    """plain, a missing method or any other name is refused."""
    with pytest.raises(InvalidRequestError, match="must be S256"):
        challenge_ok(authorization(code_challenge=CHALLENGE, code_challenge_method=method))


@pytest.mark.parametrize(
    "challenge",
    [
        CHALLENGE[:42],
        CHALLENGE + "A",
        CHALLENGE * 2,
        CHALLENGE[:42] + "+",
        CHALLENGE[:42] + "/",
        CHALLENGE[:42] + "=",
        CHALLENGE[:42] + " ",
        [CHALLENGE, CHALLENGE],
    ],
    ids=["42", "44", "86", "plus", "slash", "padding", "space", "twice"],
)
def test_BCP_13_a_challenge_is_one_value_of_exactly_43_base64url_characters(
    default_pkce, challenge
):
    """Shorter, longer, non-base64url or repeated challenges are refused."""
    with pytest.raises(InvalidRequestError):
        challenge_ok(authorization(code_challenge=challenge, code_challenge_method="S256"))


def verifier_ok(grant: Any) -> bool:
    S256CodeChallenge(required=True).validate_code_verifier(grant, None)
    return True


def test_BCP_09_only_the_exact_verifier_redeems_the_code():
    """The verifier whose SHA-256 is the challenge passes; any other is invalid_grant."""
    assert verifier_ok(redemption(VERIFIER))
    with pytest.raises(InvalidGrantError, match="Code challenge failed"):
        verifier_ok(redemption(VERIFIER[:-1] + "x"))


@pytest.mark.parametrize("verifier", [None, "", "short", "v" * 129, VERIFIER[:-1] + "+"], ids=str)
def test_BCP_09_a_missing_or_malformed_verifier_is_invalid_grant(verifier):
    """Authlib calls these invalid_request; the token endpoint answers invalid_grant."""
    with pytest.raises(InvalidGrantError):
        verifier_ok(redemption(verifier))


def test_BCP_10_a_verifier_for_a_code_without_challenge_is_invalid_grant():
    """No PKCE downgrade: a verifier sent for a code issued without a challenge fails; no
    verifier then is fine."""
    with pytest.raises(InvalidGrantError, match="no 'code_challenge'"):
        verifier_ok(redemption(VERIFIER, challenge=None))
    assert verifier_ok(redemption(None, challenge=None))
