"""Signing key rotation (OIDC-53 oidcc-server-rotate-keys, CRYPTO-08, CRYPTO-04): publish
ahead, keep the old key published until its tokens expire, retire at once when
compromised, and the `identity keys list|rotate|retire` commands.

time-machine moves the wall clock but not time.monotonic, on which each worker schedules
its key-ring reloads; tests that travel drop the ring (what the schedule does by itself).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner

from tests.oauth.conftest import (
    ModeFlow,
    bearer,
    public_jwks,
    unverified,
    verify_with_jwks,
)

pytestmark = pytest.mark.usefixtures("fast_keys")
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def cli(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `identity ...` in-process against the test app's database and secret key."""
    from identity.cli import cli as command
    from identity.cli import oauth_commands as _  # noqa: F401 - registers the commands

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())

    def run(*args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(command, list(args))
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def reload_keys(app: Any) -> None:
    """What each worker's reload schedule does once the moment has come."""
    app.extensions["identity"].keys.invalidate()


def key_rows(cli: Any) -> list[dict[str, Any]]:
    return json.loads(cli("keys", "list", "--json").output)


def kids(client: Any) -> list[str]:
    return [k["kid"] for k in public_jwks(client)["keys"]]


def signing_kid(client: Any, rp: Any, flow: ModeFlow) -> tuple[str, dict[str, Any]]:
    body = flow.tokens(rp)
    return unverified(body["id_token"])[0]["kid"], body


def test_OIDC_53_rotation_publishes_a_new_key_and_keeps_the_old(app, client, user, rp, cli):
    """After `identity keys rotate --alg ES256` the JWKS holds the new and the old ES256 key,
    and new ID tokens are signed with the new one."""
    flow = ModeFlow(client, "query")
    old_kid, _ = signing_kid(client, rp, flow)
    before = kids(client)
    output = cli("keys", "rotate", "--alg", "ES256").output
    reload_keys(app)
    after = kids(client)
    new = [k for k in after if k not in before]
    assert len(new) == 1 and new[0] in output
    assert old_kid in after
    assert len(after) == len(set(after))
    assert signing_kid(client, rp, flow)[0] == new[0]


def test_OIDC_53_publish_ahead_delays_signing(app_factory, fast_keys, make_user):
    """With a publish-ahead delay the new key is in the JWKS at once but signs only once the
    delay is over."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys, rotate

    app = app_factory(key_rotation_publish_ahead=300)
    rt = app.extensions["identity"]
    with app.app_context():
        ensure_keys(db.session, rt.keys.cipher, ("ES256", "RS256"))
        new = rotate(db.session, rt.keys.cipher, "ES256", 300, 3700).kid
        db.session.commit()
    make_user()
    client = app.test_client()
    rp = _client(app)
    flow = ModeFlow(client, "query")
    assert new in kids(client)
    now_kid, _ = signing_kid(client, rp, flow)
    assert now_kid != new
    # The worker has scheduled its own reload for that moment.
    with app.app_context():
        ring = rt.keys.ring(db.session)
    assert ring.next_change - ring.loaded_at == pytest.approx(300, abs=5)
    with time_machine.travel(time.time() + 301, tick=True):
        reload_keys(app)
        later_kid, _ = signing_kid(client, rp, flow)
        assert later_kid == new
        assert now_kid in kids(client)  # still verifying what it signed


def _client(app: Any) -> Any:
    """A registered relying party for apps built outside the make_client fixture."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES
    from tests.oauth.conftest import REDIRECT_URI, RegisteredClient

    with app.app_context():
        meta = normalize_metadata(
            {"redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"]},
            known_scopes=KNOWN_SCOPES,
            signing_algs=ALGORITHMS,
            default_id_token_alg="ES256",
        )
        created = client_service.create_client(db.session, name="RP", meta=meta, first_party=True)
        db.session.commit()
        return RegisteredClient(created.client.client_id, created.client_secret, REDIRECT_URI)


def test_CRYPTO_08_tokens_signed_before_rotation_verify_until_they_expire(
    app, client, user, rp, cli
):
    """ID and access tokens from before a rotation keep verifying (JWKS, userinfo,
    id_token_hint) until the old key is unpublished after the longest token lifetime."""
    flow = ModeFlow(client, "query")
    old_kid, body = signing_kid(client, rp, flow)
    cli("keys", "rotate")
    reload_keys(app)
    assert verify_with_jwks(client, body["id_token"])["sub"]
    assert client.get("/userinfo", headers=bearer(body["access_token"])).status_code == 200
    response, _ = flow.start(rp, prompt="none", id_token_hint=body["id_token"])
    assert "code=" in response.headers["Location"]
    row = next(r for r in key_rows(cli) if r["kid"] == old_kid)
    assert row["status"] == "retired"
    settings = app.extensions["identity"].settings
    unpublish = row["unpublish_at"]
    from datetime import datetime

    lifetime = max(settings.access_token_lifetime, settings.id_token_lifetime)
    left = datetime.fromisoformat(unpublish).timestamp() - time.time()
    assert lifetime <= left <= lifetime + 120
    with time_machine.travel(time.time() + left + 1, tick=True):
        reload_keys(app)
        assert old_kid not in kids(client)
        response, _ = flow.start(rp, prompt="none", id_token_hint=body["id_token"])
        assert "error=invalid_request" in response.headers["Location"]


def test_OIDC_53_retire_now_unpublishes_a_compromised_key(app, client, user, rp, cli):
    """`identity keys retire KID --now` removes the key from the JWKS at once and its tokens
    stop verifying; its successor signs."""
    flow = ModeFlow(client, "query")
    old_kid, body = signing_kid(client, rp, flow)
    cli("keys", "rotate", "--alg", "ES256")
    output = cli("keys", "retire", old_kid, "--now").output
    assert old_kid in output
    reload_keys(app)
    assert old_kid not in kids(client)
    assert client.get("/userinfo", headers=bearer(body["access_token"])).status_code == 401
    response, _ = flow.start(rp, prompt="none", id_token_hint=body["id_token"])
    assert "error=invalid_request" in response.headers["Location"]
    new_kid, fresh = signing_kid(client, rp, flow)
    assert new_kid != old_kid
    assert client.get("/userinfo", headers=bearer(fresh["access_token"])).status_code == 200
    statuses = {r["kid"]: r["status"] for r in key_rows(cli)}
    assert statuses[old_kid] == "unpublished" and statuses[new_kid] == "active"


def test_OIDC_53_retire_without_now_keeps_the_key_published(app, client, user, rp, cli):
    """Retiring without --now stops signing but keeps verifying the key's tokens."""
    flow = ModeFlow(client, "query")
    old_kid, body = signing_kid(client, rp, flow)
    cli("keys", "rotate", "--alg", "ES256")
    cli("keys", "retire", old_kid)
    reload_keys(app)
    assert old_kid in kids(client)
    assert client.get("/userinfo", headers=bearer(body["access_token"])).status_code == 200
    assert signing_kid(client, rp, flow)[0] != old_kid


def test_OIDC_53_the_only_key_of_an_alg_cannot_be_retired(app, client, cli, keys):
    """Retiring the last ES256 key is refused (nothing would sign), and so is an unknown kid."""
    es = next(r for r in key_rows(cli) if r["alg"] == "ES256")
    result = cli("keys", "retire", es["kid"], "--now", ok=False)
    assert result.exit_code != 0 and "rotate" in result.output
    assert es["kid"] in kids(client)
    assert cli("keys", "retire", "no-such-kid", ok=False).exit_code != 0


def test_OIDC_53_keys_list_shows_states(app, cli, keys):
    """`identity keys list --json` shows each key's alg and state, never key material."""
    rows = key_rows(cli)
    assert {r["alg"] for r in rows} == {"ES256", "RS256"}
    assert {r["status"] for r in rows} == {"active"}
    cli("keys", "rotate", "--alg", "RS256")
    rows = key_rows(cli)
    assert sorted(r["status"] for r in rows if r["alg"] == "RS256") == ["active", "retired"]
    text = cli("keys", "list").output
    assert all(r["kid"] in text for r in rows)
    for row in rows:
        assert not PRIVATE_MEMBERS & set(row)
        assert "private" not in json.dumps(row).lower()


def test_CRYPTO_04_jwks_after_rotations_has_distinct_kids_and_no_private_parts(
    app, client, cli, keys
):
    """After several rotations every published key is public-only with a unique kid."""
    for _ in range(2):
        cli("keys", "rotate")
    reload_keys(app)
    jwks = public_jwks(client)
    listed = [k["kid"] for k in jwks["keys"]]
    assert len(listed) == 6 and len(set(listed)) == 6
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(key)
        assert key["use"] == "sig" and key["alg"] in ("ES256", "RS256")
    assert len({json.dumps(k, sort_keys=True) for k in jwks["keys"]}) == 6


def test_CRYPTO_04_private_keys_are_encrypted_at_rest(app, keys):
    """The stored private JWKs are AES-GCM sealed, so a database dump alone holds no private
    key."""
    from identity.extensions import db
    from identity.models.oauth import SigningKey

    with app.app_context():
        rows = db.session.query(SigningKey).all()
        assert rows
        for row in rows:
            assert row.private_jwk_encrypted.startswith("v1.")
            assert '"d"' not in row.private_jwk_encrypted
            assert not PRIVATE_MEMBERS & set(row.public_jwk)


def test_CRYPTO_08_another_workers_rotation_is_picked_up(app_factory, fast_keys, make_user):
    """A token signed with a key another instance just created verifies here at once (an
    unknown kid reloads the ring)."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys, rotate

    first = app_factory()
    rt = first.extensions["identity"]
    with first.app_context():
        ensure_keys(db.session, rt.keys.cipher, ("ES256", "RS256"))
        db.session.commit()
    make_user()
    rp = _client(first)
    browser = first.test_client()
    assert public_jwks(browser)["keys"]  # this worker has loaded its ring
    second = app_factory()
    rt2 = second.extensions["identity"]
    with second.app_context():
        new = rotate(db.session, rt2.keys.cipher, "ES256", 0, 3700).kid
        db.session.commit()
    other_browser = second.test_client()
    kid, body = signing_kid(other_browser, rp, ModeFlow(other_browser, "query"))
    assert kid == new
    # The first worker never saw the new key, yet verifies its tokens.
    assert browser.get("/userinfo", headers=bearer(body["access_token"])).status_code == 200
