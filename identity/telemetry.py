"""Prometheus metrics: what the app counts and measures, without Flask or the database.

prometheus-client works in one of two modes, chosen when it is first imported: with
``PROMETHEUS_MULTIPROC_DIR`` set (``identity serve`` sets it before any worker starts,
identity.serving.prepare_metrics_dir) every process writes its values to files in that
folder and a scrape adds up every worker's; without it (the Flask test client, a single
process) the values live in this process's default registry. The page that shows them is
identity.metrics; the figures read from the database at scrape time are there too.

Per request this costs one counter and one histogram observation on a cached child (no
label look-up, no database access).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SIGN_IN_EVENT = "user.sign_in"
REFRESH_REUSE_EVENT = "oauth.refresh_token_reused"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "identity_http_requests",
    "HTTP requests answered, by Flask endpoint (never the raw path), method and status code.",
    ["endpoint", "method", "code"],
)
LATENCY = Histogram(
    "identity_http_request_duration_seconds",
    "Time from the first request hook to the response, by Flask endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SIGN_INS = Counter(
    "identity_sign_ins",
    'Password sign-ins by outcome (the audit event "user.sign_in").',
    ["outcome"],
)
TOKENS = Counter(
    "identity_tokens_issued",
    "Token responses issued at the token endpoint, by grant type.",
    ["grant_type"],
)
REFRESH_REUSE = Counter(
    "identity_refresh_token_reuse_detections",
    "Rotated refresh tokens presented again (the family is revoked each time).",
)
POOL_CHECKED_OUT = Gauge(
    "identity_db_pool_checked_out",
    "Database connections in use (checked out of the pool), summed over live workers.",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "identity_db_pool_size",
    "Database connections each pool keeps (without overflow), summed over live workers.",
    multiprocess_mode="livesum",
)

_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def observe_request(endpoint: str | None, method: str, code: int, seconds: float) -> None:
    """One answered request. Children are cached per (endpoint, method, code): endpoints
    and codes are bounded, and so are methods (any other is "other")."""
    key = (endpoint or "none", method, code)
    children = _children.get(key)
    if children is None:
        name = key[0]
        label = method if method in METHODS else "other"
        children = (REQUESTS.labels(name, label, str(code)), LATENCY.labels(name))
        _children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def audited(event: str, outcome: str) -> None:
    """identity.audit's listener: the events that are also metrics."""
    if event == SIGN_IN_EVENT:
        SIGN_INS.labels(outcome).inc()
    elif event == REFRESH_REUSE_EVENT:
        REFRESH_REUSE.inc()


def token_issued(grant_type: str) -> None:
    TOKENS.labels(grant_type).inc()


def watch_pool(engine: Any) -> None:
    """The pool's size now, and its checked-out connections at every check-out and
    check-in (the pool's own count, so a lost event cannot make it drift)."""
    pool = engine.pool
    checkedout = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if checkedout is None or size is None:  # a pool that keeps no count (NullPool)
        return
    POOL_SIZE.set(size())

    def _checked_out(*_: Any) -> None:
        POOL_CHECKED_OUT.set(checkedout())

    def _checked_in(*_: Any) -> None:
        # The check-in event comes before the pool takes the connection back.
        POOL_CHECKED_OUT.set(max(checkedout() - 1, 0))

    event.listen(engine, "checkout", _checked_out)
    event.listen(engine, "checkin", _checked_in)
