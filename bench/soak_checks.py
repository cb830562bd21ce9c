"""What the soak proves (bench/soak.py): every error falls inside a fault's window and is
of the kind that fault allows, /readyz tells the truth, and every write the servers
acknowledged is in the database and still works.

Thresholds are generous where timing is involved (a shared CI machine), but every rule is
a real check: a violation makes the soak exit 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psycopg
from soak_faults import PostgresCluster, SoakError
from soak_model import Failed, Family, Sample
from soak_report import Fault
from soak_traffic import Traffic

RECOVERY = 5.0  # seconds after PostgreSQL or Redis is back by which every error must end
KILL_SLACK = 1.0  # requests sent this soon after the kill may still meet the dead worker
# Requests Flask-Limiter counts in Redis: with Redis down they must fail closed (503).
LIMITED = {"authorize", "sign-in", "register"}
MAX_CONNECTIONS = 2 * 2 * (3 * 5 + 1)  # servers x workers x (3 x pool size + 1), operations.md
STUCK_AFTER = 10.0  # seconds a backend may sit in a transaction or a statement


def warm_up(traffic: Traffic) -> None:
    """One code flow per user, a registration and a client-credentials token, one at a
    time: the set-up works before any load, and there are families and tokens to use."""
    users = traffic.ctx.users
    try:
        with ThreadPoolExecutor(4) as pool:  # several users sign in at once
            list(pool.map(lambda user: traffic.sign_in_flow(traffic.ctx.web, *user), users))
        traffic.register()
        traffic.client_credentials()
    except Failed as failure:
        raise SoakError(f"the warm-up failed: {failure}") from None
    if traffic.problems:
        raise SoakError(f"the warm-up failed: {traffic.problems[0]}")


def errors_in(samples: list[Sample]) -> list[str]:
    """Errors before the soak (warm-up and peak): there are no faults then."""
    failed = [s for s in samples if not s.ok]
    return [f"{len(failed)} errors while measuring the peak: {_describe(failed)}"] if failed else []


def _describe(samples: list[Sample]) -> str:
    kinds = Counter(f"{s.op} {s.status or 'no answer'}" for s in samples)
    return ", ".join(f"{n} x {kind}" for kind, n in kinds.most_common(6))


def explains(fault: Fault, sample: Sample) -> bool:
    """Whether a failed request is one the fault may cause."""
    if fault.kind == "kill -9 worker":
        # In flight on the killed worker's server when it died: no answer at all.
        return (
            sample.server == 0
            and sample.status == 0
            and sample.start <= fault.start + KILL_SLACK
            and sample.end >= fault.start
        )
    # A store down answers 503 "try again", never a 500 or no answer; with Redis down only
    # the rate-limited requests may fail.
    return (
        sample.start <= fault.end + RECOVERY
        and sample.end >= fault.start
        and sample.status == HTTPStatus.SERVICE_UNAVAILABLE
        and (fault.kind != "Redis down" or sample.op in LIMITED)
    )


def check(
    args: argparse.Namespace,
    traffic: Traffic,
    monitor: Any,
    faults: list[Fault],
    pg: PostgresCluster,
) -> tuple[list[str], list[str]]:
    """(violations, findings) of the soak just run; the servers still serve."""
    violations = list(traffic.problems)
    findings: list[str] = []
    failed = [s for s in traffic.samples if not s.ok]
    stray = [s for s in failed if not any(explains(fault, s) for fault in faults)]
    if stray:
        first = ", ".join(f"{s.op} {s.status} at {s.start:.1f} s" for s in stray[:5])
        violations.append(f"{len(stray)} errors outside what the faults allow ({first})")
    for fault in faults:
        mine = [s for s in failed if explains(fault, s)]
        last = max((s.end for s in mine), default=None)
        after = "none" if last is None else f"last {last - fault.end:+.1f} s after it was back"
        findings.append(
            f"{fault.kind} at {fault.start:.1f} s, back at {fault.end:.1f} s: "
            f"{len(mine)} errors ({_describe(mine) or 'none'}); {after}"
        )
        violations += rule(fault, traffic.samples, monitor, failed)
    for server in monitor.servers:
        if server.process.poll() is not None:
            violations.append(f"server {server.url} exited during the soak")
    violations += ledger(traffic, pg, findings)
    return violations, findings


def rule(fault: Fault, samples: list[Sample], monitor: Any, failed: list[Sample]) -> list[str]:
    out: list[str] = []
    if fault.kind == "kill -9 worker":
        if "no replacement" in fault.note:
            out.append(f"the killed worker was not replaced: {fault.note}")
        return out
    assert fault.down is not None and fault.back_from is not None
    if fault.kind == "PostgreSQL restart":
        while_down = [p for p in monitor.ready if fault.down + 0.3 <= p[0] <= fault.back_from - 0.1]
        for i in range(len(monitor.servers)):
            mine = [status for _, server, status in while_down if server == i]
            if not mine or any(status != HTTPStatus.SERVICE_UNAVAILABLE for status in mine):
                out.append(f"/readyz of server {i + 1} while PostgreSQL was down: {mine}")
            back = [
                t
                for t, server, status in monitor.ready
                if server == i and t >= fault.end and status == HTTPStatus.OK
            ]
            if not back or back[0] > fault.end + RECOVERY:
                out.append(
                    f"server {i + 1} not ready within {RECOVERY:.0f} s of PostgreSQL's return"
                )
    else:
        inside = [
            s
            for s in samples
            if s.op in LIMITED and fault.down + 0.2 <= s.start <= fault.back_from - 0.1
        ]
        passed = [s for s in inside if s.op in ("sign-in", "register") and s.ok]
        if passed:
            out.append(f"{len(passed)} rate-limited requests allowed while Redis was down")
        if not any(s.status == HTTPStatus.SERVICE_UNAVAILABLE for s in inside):
            out.append("no rate-limited request answered 503 while Redis was down (not exercised)")
    return out


def ledger(traffic: Traffic, pg: PostgresCluster, findings: list[str]) -> list[str]:
    """Every acknowledged write is in the database and behaves."""
    out: list[str] = []
    book = traffic.ledger
    families = list(book.families)
    url = pg.url.rsplit("/", 1)[0] + "/identity_soak"
    with psycopg.connect(url) as conn:
        hashes = [hashlib.sha256(f.token.encode()).hexdigest() for f in families]
        current = {
            row[0]
            for row in conn.execute(
                "SELECT token_hash FROM refresh_tokens WHERE token_hash = ANY(%s)"
                " AND rotated_at IS NULL AND revoked_at IS NULL",
                (hashes,),
            )
        }
        consents = set(
            conn.execute(
                "SELECT u.email, c.client_id FROM consents k JOIN users u ON u.id = k.user_id"
                " JOIN clients c ON c.id = k.client_pk"
            ).fetchall()
        )
        ids = [c.client_id for c in book.registered]
        registered = {
            row[0]
            for row in conn.execute(
                "SELECT client_id FROM clients WHERE client_id = ANY(%s)", (ids,)
            )
        }
        activity = conn.execute(
            "SELECT state, EXTRACT(EPOCH FROM now() - state_change), left(query, 60)"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    missing = len(families) - len(current)
    if missing:
        out.append(f"{missing} of {len(families)} acknowledged refresh tokens are not current")
    lost = book.consents - {(email, client_id) for email, client_id in consents}
    if lost:
        out.append(f"{len(lost)} of {len(book.consents)} acknowledged consents are missing")
    if len(registered) != len(ids):
        out.append(f"{len(ids) - len(registered)} of {len(ids)} registered clients are missing")

    def rotate(family: Family) -> bool:
        try:
            traffic.rotate(family, family.rotations % 2, op="verify:refresh")
        except Failed:
            return False
        return True

    def token(index_client: tuple[int, Any]) -> bool:
        try:
            traffic.client_credentials(index_client[1], index_client[0] % 2)
        except Failed:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        rotated = sum(pool.map(rotate, families))
        served = sum(pool.map(token, enumerate(book.registered)))
    if rotated != len(families):
        out.append(f"{len(families) - rotated} of {len(families)} refresh families do not rotate")
    if served != len(book.registered):
        out.append(f"{len(book.registered) - served} registered clients get no token")
    stuck = [
        row
        for row in activity
        if row[0] in ("active", "idle in transaction") and float(row[1] or 0) > STUCK_AFTER
    ]
    if stuck:
        out.append(f"stuck PostgreSQL connections: {stuck[:3]}")
    if len(activity) > MAX_CONNECTIONS:
        out.append(f"{len(activity)} PostgreSQL connections, more than {MAX_CONNECTIONS}")
    states = Counter(row[0] for row in activity)
    findings.append(
        f"ledger: {len(families)} refresh families current and rotating ({book.uncertain} left "
        f"out: a rotation got no answer), {len(book.consents)} consents, {len(ids)} "
        f"registered clients getting tokens; PostgreSQL afterwards: {len(activity)} "
        f"connections ({', '.join(f'{n} {s}' for s, n in states.items())}), none stuck"
        if not stuck
        else ""
    )
    return out


def server_logs(root: Path) -> list[str]:
    """Unhandled errors (500s) and lines that are not JSON in the servers' logs."""
    out: list[str] = []
    for log in sorted(root.glob("server*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                out.append(f"{log.name}: not a JSON line: {line[:120]}")
                continue
            if entry.get("event") == "error.unhandled" or entry.get("level") == "critical":
                out.append(
                    f"{log.name}: {entry.get('msg')} ({entry.get('event')}, {entry.get('path')})"
                )
    return out[:20]


def summary(
    args: argparse.Namespace,
    traffic: Traffic,
    peak: float,
    violations: list[str],
    findings: list[str],
) -> str:
    samples = traffic.samples
    ops = Counter(s.op for s in samples)
    lines = [
        f"- Peak {peak:.1f} operations/s (closed loop, {args.threads} threads, "
        f"{args.peak_seconds:.0f} s); soaked at {traffic.rate:.1f} operations/s for "
        f"{args.duration:.0f} s: {len(samples)} requests, {sum(not s.ok for s in samples)} errors.",
        "- Requests: " + ", ".join(f"{op} {n}" for op, n in ops.most_common()) + ".",
        *(f"- {text}." for text in findings if text),
        "- Violations: " + ("none." if not violations else ""),
        *(f"  - {text}" for text in violations),
    ]
    return "\n".join(lines)
