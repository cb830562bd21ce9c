"""/metrics (issue 15, part 4): what it counts, what it reads at scrape time, and who may
read it. Through the Flask test client the process's own registry is used (no
PROMETHEUS_MULTIPROC_DIR); tests/integration/test_metrics_workers.py covers the workers."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD, sign_in
from tests.oauth.conftest import RegisteredClient

TOKEN = "metrics-token-" + "m" * 32
ELSEWHERE = {"REMOTE_ADDR": "203.0.113.7"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient, **kwargs: Any) -> Samples:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.content_type.startswith("text/plain; version=")
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


@pytest.fixture
def keys(app: Flask) -> None:
    from identity.extensions import db
    from identity.oauth.keys import ensure_keys

    with app.app_context():
        rt = app.extensions["identity"]
        ensure_keys(db.session, rt.keys.cipher, ("ES256", "RS256"))
        db.session.commit()
        rt.keys.invalidate()


def service_client(app: Flask) -> RegisteredClient:
    from identity.extensions import db
    from identity.oauth.clients import service as client_service
    from identity.oauth.clients.metadata import normalize_metadata
    from identity.oauth.keys import ALGORITHMS
    from identity.oauth.scopes import KNOWN_SCOPES

    raw = {
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "scope": "roles",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    with app.app_context():
        meta = normalize_metadata(
            raw, known_scopes=KNOWN_SCOPES, signing_algs=ALGORITHMS, default_id_token_alg="ES256"
        )
        created = client_service.create_client(
            db.session, name="Service", meta=meta, first_party=False, registered_via="cli"
        )
        db.session.commit()
        return RegisteredClient(created.client.client_id, created.client_secret, "")


def test_requests_are_counted_by_endpoint_and_status_never_by_path(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-page-4711").status_code == 404
    response = client.get("/metrics")
    after = parse(response.get_data(as_text=True))
    ok = {"endpoint": "health.healthz", "method": "GET", "code": "200"}
    assert value(after, "identity_http_requests_total", **ok) - value(
        before, "identity_http_requests_total", **ok
    ) == pytest.approx(3)
    latency = "identity_http_request_duration_seconds_count"
    assert value(after, latency, endpoint="health.healthz") - value(
        before, latency, endpoint="health.healthz"
    ) == pytest.approx(3)
    assert value(after, "identity_http_requests_total", endpoint="none", method="GET", code="404")
    # The raw path of an unknown URL never becomes a label (bounded cardinality).
    assert "no-such-page-4711" not in response.get_data(as_text=True)


def test_sign_ins_are_counted_by_outcome(client, user):
    before = scrape(client)
    assert sign_in(client, password="wrong " + PASSWORD).status_code != 303
    assert sign_in(client).status_code == 303
    after = scrape(client)
    for outcome in ("success", "failure"):
        moved = value(after, "identity_sign_ins_total", outcome=outcome) - value(
            before, "identity_sign_ins_total", outcome=outcome
        )
        assert moved == pytest.approx(1), outcome


def test_tokens_are_counted_by_grant_type(app, client, keys):
    service = service_client(app)
    before = scrape(client)
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=service.basic_auth()
    )
    assert response.status_code == 200, response.json
    after = scrape(client)
    name = "identity_tokens_issued_total"
    grant = {"grant_type": "client_credentials"}
    assert value(after, name, **grant) - value(before, name, **grant) == pytest.approx(1)
    endpoint = next(r.endpoint for r in app.url_map.iter_rules() if r.rule == "/oauth/token")
    ok = {"endpoint": endpoint, "method": "POST", "code": "200"}
    assert value(after, "identity_http_requests_total", **ok) - value(
        before, "identity_http_requests_total", **ok
    ) == pytest.approx(1)


def test_refresh_token_reuse_is_counted_from_its_audit_event(app, client):
    """Reuse is detected in identity.oauth.token.grants (RefreshTokenGrant._reused), which
    records "oauth.refresh_token_reused"; the audit listener counts it."""
    from identity import audit
    from identity.extensions import db

    name = "identity_refresh_token_reuse_detections_total"
    before = value(scrape(client), name)
    with app.app_context():
        audit.record(db.session(), "oauth.refresh_token_reused", outcome="failure")
        db.session.commit()
    assert value(scrape(client), name) - before == pytest.approx(1)


def test_queue_gauges_reflect_queued_mail(app, client):
    from identity.extensions import db

    empty = scrape(client)
    assert value(empty, "identity_metrics_store_up") == 1
    for queue in ("mail", "privacy_jobs", "security_events"):
        assert (("identity_queue_depth", frozenset({("queue", queue)}))) in empty
        assert value(empty, "identity_queue_oldest_age_seconds", queue=queue) == 0
    with app.app_context():
        mailer = app.extensions["identity"].mailer
        for _ in range(2):
            mailer.send(db.session, "ann@example.org", "Hello", "body")
        db.session.info["identity.mail.queued"] = []  # queued, not sent: as after a crash
        db.session.commit()
    queued = scrape(client)
    assert value(queued, "identity_queue_depth", queue="mail") == 2
    assert value(queued, "identity_queue_oldest_age_seconds", queue="mail") >= 0
    assert value(queued, "identity_queue_depth", queue="privacy_jobs") == 0


def test_signing_key_ages_and_pool_are_present(client, keys):
    samples = scrape(client)
    ages = labelled(samples, "identity_signing_key_age_seconds")
    assert {labels["alg"] for labels in ages} == {"ES256", "RS256"}
    assert all(value(samples, "identity_signing_key_age_seconds", **labels) >= 0 for labels in ages)
    assert ("identity_db_pool_checked_out", frozenset()) in samples


def test_metrics_are_not_public(app_factory):
    """A non-loopback client without the token gets the same 404 as any unknown path; the
    token opens it from anywhere, compared in constant time."""
    client = app_factory(metrics_token=TOKEN).test_client()
    hidden = client.get("/metrics", environ_base=ELSEWHERE)
    unknown = client.get("/no-such-page", environ_base=ELSEWHERE)
    assert hidden.status_code == unknown.status_code == 404
    reference = re.compile(r"<code>[0-9a-f]+</code>")  # the request's id
    assert reference.sub("", hidden.get_data(as_text=True)) == reference.sub(
        "", unknown.get_data(as_text=True)
    )
    assert "identity_" not in hidden.get_data(as_text=True)
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert client.get("/metrics", environ_base=ELSEWHERE, headers=wrong).status_code == 404
    right = {"Authorization": "Bearer " + TOKEN}
    assert scrape(client, environ_base=ELSEWHERE, headers=right)
    assert scrape(client)  # loopback, no token


def test_metrics_without_a_token_setting_are_loopback_only(client):
    right = {"Authorization": "Bearer " + TOKEN}
    assert client.get("/metrics", environ_base=ELSEWHERE, headers=right).status_code == 404
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_a_proxy_on_this_host_does_not_make_its_clients_loopback(app_factory):
    """Without IDENTITY_TRUSTED_PROXIES a loopback peer that forwards someone is not local;
    with it, the forwarded address (identity.security.client_ip) decides."""
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    plain = app_factory().test_client()
    assert plain.get("/metrics", headers=forwarded).status_code == 404
    proxied = app_factory(trusted_proxies=1).test_client()
    assert proxied.get("/metrics", headers=forwarded).status_code == 404
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_the_token_is_compared_in_constant_time(app_factory, monkeypatch):
    from identity import metrics

    calls: list[tuple[bytes, bytes]] = []
    real = metrics.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(metrics.hmac, "compare_digest", spy)
    client = app_factory(metrics_token=TOKEN).test_client()
    headers = {"Authorization": "Bearer nope"}
    assert client.get("/metrics", environ_base=ELSEWHERE, headers=headers).status_code == 404
    assert calls == [(b"nope", TOKEN.encode())]


def test_a_short_metrics_token_is_refused(tmp_path):
    from pydantic import ValidationError

    from identity.settings import Settings

    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        Settings(instance_path=tmp_path, metrics_token="short")


def test_serve_from_a_process_with_metrics_loaded_counts_per_worker(tmp_path, monkeypatch):
    """prometheus_client picks its mode when imported: a process that imported it already
    (here, the tests') cannot switch its forked workers to the shared folder, and says so
    instead of pointing /metrics at a folder nobody writes to."""
    from identity.serving import MULTIPROC_ENV, prepare_metrics_dir
    from identity.settings import Settings

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    assert prepare_metrics_dir(Settings(instance_path=tmp_path)) is None
    assert MULTIPROC_ENV not in os.environ
    assert not (tmp_path / "metrics").exists()
