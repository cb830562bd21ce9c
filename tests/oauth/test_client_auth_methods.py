"""Client authentication as common relying parties do it (ISSUE7-10), and the file outbox
that holds live links (ISSUE7-09)."""

from __future__ import annotations

import stat
from typing import Any

import pytest

from tests.oauth.conftest import RegisteredClient

pytestmark = pytest.mark.usefixtures("fast_keys")


def client_credentials(client: Any, rp: RegisteredClient, how: str) -> Any:
    data = {"grant_type": "client_credentials"}
    if how == "basic":
        return client.post("/oauth/token", data=data, headers=rp.basic_auth())
    if how == "post":
        data.update(client_id=rp.client_id, client_secret=rp.client_secret or "")
        return client.post("/oauth/token", data=data)
    return client.post("/oauth/token", data={**data, "client_id": rp.client_id})


def service(make_client: Any, **extra: Any) -> RegisteredClient:
    return make_client(  # type: ignore[no-any-return]
        "Service", grant_types=["client_credentials"], redirect_uris=[], scope="roles", **extra
    )


def unpinned_service(app: Any) -> RegisteredClient:
    """A client registered as `identity clients create` does without --auth-method."""
    from identity.extensions import db
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES

    raw = {"grant_types": ["client_credentials"], "scope": "roles"}
    with app.app_context():
        meta = normalize_metadata(
            raw, known_scopes=KNOWN_SCOPES, signing_algs=ALGORITHMS, default_id_token_alg="RS256"
        )
        created = client_service.create_client(db.session, name="Unpinned", meta=meta)
        db.session.commit()
        return RegisteredClient(created.client.client_id, created.client_secret, "")


@pytest.mark.parametrize("how", ["basic", "post"])
def test_ISSUE7_10_a_secret_client_without_a_chosen_method_accepts_both(app, client, keys, how):
    """A client created without --auth-method may send its secret by HTTP Basic or in the
    body, as relying parties differ in their default."""
    rp = unpinned_service(app)
    response = client_credentials(client, rp, how)
    assert response.status_code == 200, response.json


def test_ISSUE7_10_a_client_pinned_to_one_method_refuses_the_other(client, make_client):
    """A client created with --auth-method client_secret_basic refuses the secret in the
    body, and says which method it is registered for (no Python list)."""
    rp = service(make_client, auth_method="client_secret_basic")
    assert client_credentials(client, rp, "basic").status_code == 200
    refused = client_credentials(client, rp, "post")
    assert refused.status_code in (400, 401)
    assert refused.json["error"] == "invalid_client"
    description = refused.json["error_description"]
    assert "client_secret_basic" in description and "client_secret_post" not in description
    assert "[" not in description and "'" not in description


def test_ISSUE7_10_wrong_secret_names_what_the_client_is_registered_for(app, client, keys):
    """A wrong secret is refused with a description of the client's methods."""
    rp = unpinned_service(app)
    wrong = RegisteredClient(rp.client_id, "not-the-secret", "")
    refused = client_credentials(client, wrong, "basic")
    assert refused.status_code == 401
    assert refused.json["error"] == "invalid_client"
    assert "client_secret_basic or client_secret_post" in refused.json["error_description"]


def test_ISSUE7_10_registration_response_hides_the_internal_method_list(app_factory):
    """What a dynamically registered client is told is RFC 7591 metadata only."""
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    app = app_factory(dcr_initial_access_token="t" * 40)
    with app.app_context():
        ensure_keys(db.session, app.extensions["identity"].keys.cipher, ("RS256",))
        db.session.commit()
    response = app.test_client().post(
        "/oauth/register",
        json={"redirect_uris": ["https://rp.example.org/cb"]},
        headers={"Authorization": "Bearer " + "t" * 40},
    )
    assert response.status_code == 201, response.json
    assert response.json["token_endpoint_auth_method"] == "client_secret_basic"
    assert "accepted_auth_methods" not in response.json


def test_ISSUE7_09_file_outbox_is_readable_by_its_owner_only(app_factory, tmp_path):
    """Mail written by the file backend (live reset links) is 0600 in a 0700 folder, whatever
    the umask, and an existing looser folder is tightened."""
    import os

    from identity.mail import write_outbox_file

    outbox = tmp_path / "outbox"
    outbox.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        path = write_outbox_file(outbox, b"Subject: x\n\nlink")
    finally:
        os.umask(old)
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"Subject: x\n\nlink"
