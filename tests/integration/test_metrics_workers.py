"""/metrics under `identity serve --workers 2` (issue 15, part 4): prometheus-client's
multiprocess mode adds up every worker's counts, whichever worker answers the scrape."""

from __future__ import annotations

import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import WORKERS, Harness

pytestmark = pytest.mark.slow

REQUESTS = 40
SCRAPES = 6
CLOSE = {"Connection": "close"}  # a new connection each time: either worker may answer


def healthz_count(text: str) -> tuple[float, float]:
    """The requests counted for /healthz, and the latency histogram's count."""
    counted = observed = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != "health.healthz":
                continue
            if sample.name == "identity_http_requests_total":
                counted += sample.value
            elif sample.name == "identity_http_request_duration_seconds_count":
                observed += sample.value
    return counted, observed


def test_metrics_add_up_every_worker(identity_factory: Harness) -> None:
    instance = identity_factory.instance()
    instance.cli("init")
    folder = instance.path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"a previous run's values")  # emptied at start
    server = identity_factory.server(instance)
    for _ in range(REQUESTS):
        assert requests.get(server.url + "/healthz", headers=CLOSE, timeout=10).ok
    for _ in range(SCRAPES):
        response = requests.get(server.url + "/metrics", headers=CLOSE, timeout=10)
        assert response.status_code == 200
        assert healthz_count(response.text) == (REQUESTS, REQUESTS)
        assert "identity_queue_depth" in response.text
        assert "identity_signing_key_age_seconds" in response.text
    # Each worker writes its own files into the folder `identity serve` emptied; the live
    # gauges (database pool) are the workers' only: the master's were marked dead.
    assert not (folder / "counter_1.db").exists()
    live = {
        found.group(1)
        for path in folder.glob("gauge_livesum_*.db")
        if (found := re.search(r"_(\d+)\.db$", path.name))
    }
    assert len(live) == WORKERS, sorted(path.name for path in folder.glob("*.db"))
    # Not for other hosts: a forwarded client is not loopback without trusted proxies.
    forwarded = {**CLOSE, "X-Forwarded-For": "203.0.113.7"}
    assert requests.get(server.url + "/metrics", headers=forwarded, timeout=10).status_code == 404
