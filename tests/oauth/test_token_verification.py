"""TokenService.verify_jwt and verify_access_token, called directly with tokens signed by the
server's own key (grey-box), so that each check is what refuses its token: size, header
types, kid, the algorithm pinned to the key, issuer, time claims with 30 s of leeway, jti,
the client, the user and revocations (and the revocation keys a token is looked up by)."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from joserfc.jws import JWSRegistry

from tests.oauth.conftest import b64url, forge, server_key, unverified

pytestmark = pytest.mark.usefixtures("fast_keys")


class Tokens:
    """Forges tokens with the server's signing key and runs the server's verifiers, with
    the clock stopped at ``now``."""

    def __init__(self, app: Any, client_id: str, user_id: uuid.UUID) -> None:
        settings = app.extensions["identity"].settings
        self.app = app
        self.client_id = client_id
        self.user_id = user_id
        self.issuer = str(settings.issuer)
        self.alg = settings.signing_alg
        self.kid, self.key = server_key(app, self.alg)
        self.now = int(time.time())

    def claims(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "iss": self.issuer,
            "sub": str(self.user_id),
            "aud": self.client_id,
            "client_id": self.client_id,
            "scope": "openid",
            "jti": secrets.token_urlsafe(16),
            "iat": self.now,
            "exp": self.now + 300,
        }
        values.update(overrides)
        return {k: v for k, v in values.items() if v is not None}

    def token(self, header: dict[str, Any] | None = None, **overrides: Any) -> str:
        """Signed with our key under our algorithm, whatever ``header`` says."""
        head = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        unsigned = forge(head, self.claims(**overrides), signature=b"")
        signing_input = unsigned.rsplit(".", 1)[0]
        signature = JWSRegistry.algorithms[self.alg].sign(signing_input.encode(), self.key)
        return f"{signing_input}.{b64url(signature)}"

    def _run(self, call: Any) -> Any:
        from identity.extensions import db

        with (
            self.app.app_context(),
            time_machine.travel(datetime.fromtimestamp(self.now, UTC), tick=False),
        ):
            return call(self.app.extensions["identity"].tokens, db.session)

    def jwt(self, token: Any, typ: str = "at+jwt", **options: Any) -> dict[str, Any] | None:
        return self._run(
            lambda tokens, session: tokens.verify_jwt(session, token, typ=typ, **options)
        )

    def access(self, token: str) -> dict[str, Any] | None:
        return self._run(lambda tokens, session: tokens.verify_access_token(session, token))


@pytest.fixture
def tokens(app, keys, make_client, user) -> Tokens:
    return Tokens(app, make_client().client_id, user)


def test_a_genuine_access_token_verifies(tokens):
    """The control case: a well-formed token of ours gives back its claims."""
    token = tokens.token()
    assert tokens.jwt(token) == unverified(token)[1]
    assert tokens.access(token) == unverified(token)[1]


def padded(tokens: Tokens, length: int) -> str:
    """A genuine token of exactly ``length`` characters (a claim and the cty header pad it)."""
    for extra in range(4):
        for size in range(length * 3 // 4 - 1000, length):
            token = tokens.token({"cty": "c" * extra}, pad="p" * size)
            if len(token) >= length:
                if len(token) == length:
                    return token
                break
    raise AssertionError(f"no token of {length} characters")


def test_TOK_06_tokens_over_8192_characters_are_refused_unparsed(tokens):
    """A genuine token of 8192 characters verifies; one of 8193 is refused by its size."""
    assert tokens.jwt(padded(tokens, 8192)) is not None
    assert tokens.jwt(padded(tokens, 8193)) is None


@pytest.mark.parametrize("token", [None, 5, b"a.b.c", "", "abc", "a.b.c", "...."])
def test_TOK_03_non_strings_and_malformed_tokens_are_refused_cleanly(tokens, token):
    """Anything that is not a compact JWS string gives None, never an exception."""
    assert tokens.jwt(token) is None


def test_TOK_01_an_altered_signature_is_refused(tokens):
    """Changing the signature, or the claims under it, breaks the token."""
    token = tokens.token()
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert tokens.jwt(f"{head}.{body}.{flipped}") is None
    other_body = tokens.token(sub=str(uuid.uuid4())).split(".")[1]
    assert tokens.jwt(f"{head}.{other_body}.{signature}") is None


def test_TOK_09_the_typ_header_decides_the_kind_whatever_its_case(tokens):
    """An access token needs typ at+jwt and an ID token typ JWT, compared without regard to
    case as media types are; a missing or non-string typ is refused."""
    assert tokens.jwt(tokens.token({"typ": "AT+JWT"})) is not None
    assert tokens.jwt(tokens.token({"typ": "JWT"})) is None
    assert tokens.jwt(tokens.token({"typ": None})) is None
    assert tokens.jwt(tokens.token({"typ": 5})) is None
    assert tokens.jwt(tokens.token({"typ": ["at+jwt"]})) is None
    for header_typ in ("JWT", "jwt"):
        id_token = tokens.token({"typ": header_typ})
        assert tokens.jwt(id_token, typ="JWT", check_exp=False) is not None
    assert tokens.jwt(tokens.token(), typ="JWT") is None


def test_TOK_03_kid_is_a_short_string_naming_one_of_our_keys(tokens, monkeypatch):
    """A missing, non-string or unknown kid is refused; a kid over 64 characters is refused
    before any key lookup (an unknown kid can make the server reload its keys)."""
    assert tokens.jwt(tokens.token({"kid": None})) is None
    assert tokens.jwt(tokens.token({"kid": 5})) is None
    assert tokens.jwt(tokens.token({"kid": "k" * 43})) is None
    keys = tokens.app.extensions["identity"].keys
    looked_up: list[str] = []
    real = keys.verification_key

    def spy(session: Any, kid: str) -> Any:
        looked_up.append(kid)
        return real(session, kid)

    monkeypatch.setattr(keys, "verification_key", spy)
    assert tokens.jwt(tokens.token({"kid": "k" * 64})) is None
    assert tokens.jwt(tokens.token({"kid": "k" * 65})) is None
    assert looked_up == ["k" * 64]


def test_TOK_02_the_algorithm_is_the_keys_own(tokens):
    """A header naming another algorithm than our key's is refused, whatever the signature."""
    for alg in ("ES384", "RS256", "HS256", "none"):
        assert tokens.jwt(tokens.token({"alg": alg})) is None


def test_tokens_from_another_issuer_are_refused(tokens):
    """A token signed with our key but naming another issuer (or none) is refused."""
    assert tokens.jwt(tokens.token(iss="https://other.example.org")) is None
    assert tokens.jwt(tokens.token(iss=None)) is None


def test_TOK_08_time_claims_have_30_seconds_of_leeway(tokens):
    """exp is honoured until 30 s after it, iat and nbf up to 30 s ahead of the clock; one
    second more is refused. ID token hints skip exp only."""
    now = tokens.now
    assert tokens.jwt(tokens.token(exp=now - 29)) is not None
    assert tokens.jwt(tokens.token(exp=now - 30)) is None
    assert tokens.jwt(tokens.token(iat=now + 30, nbf=now + 30)) is not None
    assert tokens.jwt(tokens.token(iat=now + 31)) is None
    assert tokens.jwt(tokens.token(nbf=now + 31)) is None
    expired = tokens.token(iat=now - 7200, exp=now - 3600)
    assert tokens.jwt(expired, check_exp=False) is not None
    assert tokens.jwt(tokens.token(iat=now + 31), check_exp=False) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "soon"},
        {"exp": None},
        {"iat": "now"},
        {"iat": None},
        {"nbf": "later"},
        {"nbf": 1.5},
    ],
    ids=["exp-text", "no-exp", "iat-text", "no-iat", "nbf-text", "nbf-float"],
)
def test_TOK_08_time_claims_must_be_whole_numbers(tokens, claims):
    """exp and iat must be present and integers, nbf an integer when present."""
    assert tokens.jwt(tokens.token(**claims)) is None
    assert tokens.jwt(tokens.token(**claims), check_exp=False) is None


def test_TOK_08_a_float_exp_is_refused(tokens):
    """exp must be an integer even when its value is in the future."""
    assert tokens.jwt(tokens.token(exp=tokens.now + 300.5)) is None


# verify_access_token --------------------------------------------------------------------


def test_an_access_token_needs_a_string_jti(tokens):
    """Revocation works by jti: a token without one, or with a number, is not accepted."""
    assert tokens.access(tokens.token(jti=None)) is None
    assert tokens.access(tokens.token(jti=12345)) is None
    assert tokens.access(tokens.token({"typ": "JWT"})) is None


def test_tokens_of_a_deleted_client_are_refused(tokens):
    """A token naming a client that does not exist (any more) is refused."""
    assert tokens.access(tokens.token(client_id="no-such-client", aud="no-such-client")) is None
    assert tokens.access(tokens.token(client_id=None)) is None


def test_BCP_31_service_tokens_have_the_client_as_sub_and_user_tokens_a_user_id(tokens):
    """A client's own token (sub equal to client_id) needs no user; any other sub must be
    the id of an existing user."""
    service = tokens.token(sub=tokens.client_id)
    assert tokens.access(service) is not None
    assert tokens.access(tokens.token(sub="not-a-user-id")) is None
    assert tokens.access(tokens.token(sub=str(uuid.uuid4()))) is None


def test_SESS_04_a_disabled_users_tokens_are_refused(tokens):
    """Once the user is disabled, their access tokens stop working at once."""
    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.user import User

    token = tokens.token()
    assert tokens.access(token) is not None
    with tokens.app.app_context():
        db.session.get(User, tokens.user_id).disabled_at = utcnow()
        db.session.commit()
    assert tokens.access(token) is None
    assert tokens.access(tokens.token(sub=tokens.client_id)) is not None


def test_BCP_31_revoked_tokens_are_refused(tokens):
    """A revoked jti or family kills the token; a user-wide revocation kills the tokens
    issued before it, not those issued after."""
    from identity.extensions import db
    from identity.revocation import remember_revocation

    def revoke(key: str) -> None:
        with (
            tokens.app.app_context(),
            time_machine.travel(datetime.fromtimestamp(tokens.now, UTC), tick=False),
        ):
            remember_revocation(db.session, key, 3600)
            db.session.commit()

    by_jti, by_family = tokens.token(jti="jti-1"), tokens.token(gid=str(uuid.uuid4()))
    service = tokens.token(sub=tokens.client_id, jti="jti-2")
    revoke("jti:jti-1")
    revoke(f"gid:{unverified(by_family)[1]['gid']}")
    revoke("jti:jti-2")
    assert tokens.access(by_jti) is None
    assert tokens.access(by_family) is None
    assert tokens.access(service) is None
    before, after = tokens.token(iat=tokens.now - 10), tokens.token(iat=tokens.now + 10)
    assert tokens.access(before) is not None
    revoke(f"sub:{tokens.user_id}")
    assert tokens.access(before) is None
    assert tokens.access(after) is not None


def revoke_at(tokens: Tokens, key: str, moment: int) -> None:
    """Revoke as the server does, with the clock stopped at ``moment``: a ``sub:`` key
    through revoke_user_tokens (password change or reset, disabling), others directly."""
    from identity.extensions import db
    from identity.revocation import remember_revocation, revoke_user_tokens

    with (
        tokens.app.app_context(),
        time_machine.travel(datetime.fromtimestamp(moment, UTC), tick=False),
    ):
        if key.startswith("sub:"):
            revoke_user_tokens(db.session, uuid.UUID(key[4:]), 3600)
        else:
            remember_revocation(db.session, key, 3600)
        db.session.commit()


def test_BCP_31_a_revoked_jti_or_family_holds_whatever_the_tokens_iat(tokens):
    """A jti or family revocation is final, even for a token whose iat is after the moment
    of revocation (another instance's clock a little ahead): only user-wide revocations
    look at iat."""
    gid = str(uuid.uuid4())
    by_jti = tokens.token(jti="jti-late", iat=tokens.now + 20)
    by_family = tokens.token(gid=gid, iat=tokens.now + 20)
    assert tokens.access(by_jti) is not None
    assert tokens.access(by_family) is not None
    revoke_at(tokens, "jti:jti-late", tokens.now)
    revoke_at(tokens, f"gid:{gid}", tokens.now)
    assert tokens.access(by_jti) is None
    assert tokens.access(by_family) is None


def test_BCP_28_a_user_wide_revocation_covers_tokens_of_its_own_second(tokens):
    """iat has whole seconds, so a token issued in the second of a password change or reset
    cannot be told apart from one issued just before it: it is revoked too; a token of the
    next second is not."""
    same_second, next_second = tokens.token(), tokens.token(iat=tokens.now + 1)
    revoke_at(tokens, f"sub:{tokens.user_id}", tokens.now)
    assert tokens.access(same_second) is None
    assert tokens.access(next_second) is not None


def test_revocation_keys_name_the_token_its_family_and_only_a_user(tokens):
    """A token is looked up by its jti, its family (gid) when it has one, and its user when
    it names one: a client's own token (sub equal to client_id), or one naming nobody, has
    no user key, so that no user-wide revocation can reach it."""
    from identity.oauth.tokens import revocation_keys

    user, client = str(tokens.user_id), tokens.client_id
    assert revocation_keys({"jti": "j", "gid": "g", "sub": user, "client_id": client}) == [
        "jti:j",
        "gid:g",
        f"sub:{user}",
    ]
    assert revocation_keys({"jti": "j", "sub": user, "client_id": client}) == [
        "jti:j",
        f"sub:{user}",
    ]
    assert revocation_keys({"jti": "j", "gid": "g", "sub": client, "client_id": client}) == [
        "jti:j",
        "gid:g",
    ]
    assert revocation_keys({"jti": "j", "client_id": client}) == ["jti:j"]
    assert revocation_keys({"jti": "j", "sub": "", "client_id": client}) == ["jti:j"]
