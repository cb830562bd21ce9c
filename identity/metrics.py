"""``/metrics``: Prometheus text format, for operators only (docs/operations.md, "Metrics").

Served to loopback clients (the address identity.security.client_ip computes, which
follows IDENTITY_TRUSTED_PROXIES) and to callers presenting ``Authorization: Bearer``
with IDENTITY_METRICS_TOKEN; anyone else gets the same 404 as any unknown path, so the
page's existence is not revealed. Without trusted proxies, a loopback peer that forwards
a client (X-Forwarded-For or Forwarded) does not count as loopback: a reverse proxy on the
same host would otherwise make every client look local.

The counters are identity.telemetry's; the figures that live in the database (queue
depths and ages, active signing keys' ages) are read here, at scrape time, never per
request. Under ``identity serve`` the values of every worker are added up
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from identity import queues, telemetry
from identity.extensions import db, limiter
from identity.models.base import utcnow
from identity.models.oauth import SigningKey
from identity.rbac.access import serves
from identity.runtime import runtime
from identity.security import client_ip

bp = serves(
    Blueprint("metrics", __name__),
    "operator",
    "Prometheus metrics (counts, queue sizes, key ages; no personal data): loopback or the "
    "metrics token only, 404 for anyone else",
)
log = logging.getLogger("identity.metrics")
FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def allowed() -> bool:
    """Loopback, or the metrics token (compared in constant time)."""
    token = runtime().settings.metrics_token
    header = request.headers.get("Authorization", "")
    if token is not None and header[:7].lower() == "bearer ":
        presented = header[7:].strip().encode()
        return hmac.compare_digest(presented, token.get_secret_value().encode()) or local()
    return local()


def local() -> bool:
    """A loopback client, not one a proxy on this host speaks for."""
    if not runtime().settings.trusted_proxies and any(k in request.environ for k in FORWARDED):
        return False  # a proxy on this host speaking for someone else
    try:
        return ipaddress.ip_address(client_ip()).is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
@limiter.exempt
def metrics() -> ResponseReturnValue:
    if not allowed():
        abort(404)
    registry = CollectorRegistry()
    if telemetry.multiprocess():
        reap_dead_workers(os.environ[telemetry.MULTIPROC_ENV])
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(StoreCollector(db.session()))
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


class _ThisProcess:
    """The default registry (a single process: tests, `flask run`)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class StoreCollector:
    """What the database holds, read at scrape time."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "identity_metrics_store_up",
            "1 when the database answered this scrape's queries, 0 when it did not.",
        )
        try:
            families = list(self._read(utcnow()))
        except SQLAlchemyError:
            self.session.rollback()
            log.warning("database not reachable", extra={"event": "metrics.db_down"})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "identity_queue_depth",
            "Items waiting in a background queue (mail, privacy_jobs, security_events).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "identity_queue_oldest_age_seconds",
            "Age of the oldest waiting item in a background queue; 0 when it is empty.",
            labels=["queue"],
        )
        for queue in queues.depths(self.session):
            depth.add_metric([queue.key], queue.pending)
            age.add_metric([queue.key], _seconds(now, queue.oldest))
        yield depth
        yield age
        keys = GaugeMetricFamily(
            "identity_signing_key_age_seconds",
            "Seconds since each active signing key (not retired) began to sign.",
            labels=["kid", "alg"],
        )
        rows = self.session.execute(
            select(SigningKey.kid, SigningKey.alg, SigningKey.active_from).where(
                SigningKey.retired_at.is_(None)
            )
        )
        for kid, alg, active_from in rows:
            if _naive(active_from) <= _naive(now):  # published ahead, not signing yet
                keys.add_metric([kid, alg], _seconds(now, active_from))
        yield keys


def _naive(moment: datetime) -> datetime:
    # SQLite gives back naive UTC, PostgreSQL aware UTC: compare them as naive UTC.
    return moment.replace(tzinfo=None)


def _seconds(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    return max((_naive(now) - _naive(then)).total_seconds(), 0.0)


def reap_dead_workers(folder: str) -> None:
    """Drop the live gauges of workers that are gone (killed, or stopped where the server
    gives no exit hook), so that ``livesum`` adds up living processes only."""
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        found = _LIVE_FILE.search(path)
        if found and not _alive(int(found.group(1))):
            mark_process_dead(int(found.group(1)), folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def setup_request_metrics(app: Flask) -> None:
    """Every answered request, by endpoint, method and status, with its duration (timed
    from identity.logs' first hook). Registered first, so it runs last of the hooks."""
    perf_counter = time.perf_counter
    observe = telemetry.observe_request

    def _observe(response: Response) -> Response:
        req: Any = request._get_current_object()  # type: ignore[attr-defined]
        started = g.get("request_started")
        elapsed = perf_counter() - started if started is not None else 0.0
        observe(req.endpoint, req.method, response.status_code, elapsed)
        return response

    app.after_request(_observe)
