#!/usr/bin/env python3
"""Soak identity under mixed traffic and faults, and prove no acknowledged write is lost.

    python bench/soak.py --short                 # about a minute, one of each fault (CI)
    python bench/soak.py --duration 300          # the long form
    python bench/soak.py --duration 600 --rate 40 --chart soak.png --report soak.md

It starts a PostgreSQL cluster and a Redis server of its own (on free ports, in a
temporary folder: they are stopped and started as faults), creates clients and users with
the ``identity`` command, and serves with two ``identity serve`` processes (granian, two
workers each) sharing the database, the rate-limit storage and the issuer. Python threads
(bench/soak_traffic.py) then send a mix of code flows with sign-in and consent, refresh
rotations, introspection, UserInfo, client credentials and dynamic registrations to both:
first as fast as answered, to measure the peak, then at 70 % of it (or ``--rate``). During
the soak it kills a granian worker (kill -9), restarts PostgreSQL and stops Redis, each
once, at set times. At the end it checks every acknowledged write (bench/soak_checks.py)
and prints the report: errors, p50 and p99 and every worker's memory per 5-second bucket,
as a table and a PNG chart. It exits 1 on any violation, 2 when it cannot set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
import soak_checks
from soak_checks import RECOVERY
from soak_faults import PostgresCluster, RedisServer, SoakError, children, rss_mib
from soak_model import SCOPE, Client, Context
from soak_report import Fault, buckets, chart, table
from soak_traffic import Traffic

REDIRECT = "https://rp.example.org/cb"
WORKERS = 2
MIN_DURATION = 30.0
PROBE_EVERY = 0.25  # seconds between /readyz probes of each server


STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"soak: {what} ({time.monotonic() - STARTED:.0f} s)", file=sys.stderr)


class Clock:
    def __init__(self) -> None:
        self.zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.zero

    def reset(self) -> None:
        self.zero = time.monotonic()


def create_client(env: dict[str, str], *args: str) -> Client:
    out = json.loads(bench.run_cli(env, "clients", "create", "--json", *args))
    return Client(out["client_id"], out["client_secret"])


def create_users(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    """Users created in one process through the accounts service (``identity users
    create`` once per user would start the app once per user)."""
    from identity import create_app
    from identity.accounts.service import Accounts
    from identity.extensions import db
    from identity.settings import load_settings

    saved = dict(os.environ)
    os.environ.update(env, IDENTITY_LOG_LEVEL="WARNING")  # not an audit line per user
    try:
        app = create_app(load_settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    users = [(f"soak{i}@example.org", secrets.token_urlsafe(16)) for i in range(count)]
    with app.app_context():
        accounts = Accounts(db.session(), app.extensions["identity"])
        for email, password in users:
            accounts.create_user(email, password, roles=[], verified=True, name="Soak User")
        db.session.commit()
        db.engine.dispose()
    return users


def prepare(
    args: argparse.Namespace, root: Path, pg: PostgresCluster, redis: RedisServer
) -> tuple[Context, list[dict[str, str]]]:
    database_url = bench.database(pg.url, "identity_soak")
    ports = [bench.free_port() for _ in range(2)]
    dcr_token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_ENV="production",
        IDENTITY_INSTANCE_PATH=str(root / "instance"),
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_ISSUER=f"http://127.0.0.1:{ports[0]}",  # one issuer, as behind a balancer
        IDENTITY_SECRET_KEY=secrets.token_urlsafe(32),
        IDENTITY_LOG_LEVEL="INFO",
        IDENTITY_RATELIMIT_STORAGE_URL=redis.url,
        # Every request comes from 127.0.0.1: the per-address limit of stored authorization
        # requests would otherwise stop the code flows after 120 a minute. It is still
        # checked in Redis on every flow, which is what the Redis fault is about.
        IDENTITY_RATELIMIT_AUTHORIZE="100000/minute",
        IDENTITY_DCR_INITIAL_ACCESS_TOKEN=dcr_token,
    )
    bench.run_cli(env, "init", "--admin-email", "admin@example.org")
    web = ("--name", "soak web", "--redirect-uri", REDIRECT, "--scope", SCOPE,
           "--grant-type", "authorization_code", "--grant-type", "refresh_token")  # fmt: skip
    service = ("--name", "soak service", "--grant-type", "client_credentials")
    resource = (
        "--name",
        "soak resource",
        "--grant-type",
        "client_credentials",
        "--resource-server",
    )
    # Each `identity` command starts the app: the three run side by side, and the users are
    # made meanwhile.
    with ThreadPoolExecutor(4) as pool:
        made = [pool.submit(create_client, env, *a) for a in (web, service, resource)]
        users = create_users(env, args.users)
        web_client, service_client, resource_client = (f.result() for f in made)
    server_envs = []
    for i, port in enumerate(ports):  # each server its own instance folder (metrics files)
        server_envs.append(
            {**env, "IDENTITY_INSTANCE_PATH": str(root / f"instance{i}"), "SOAK_PORT": str(port)}
        )
    servers = [f"http://127.0.0.1:{port}" for port in ports]
    context = Context(servers, users, web_client, service_client, resource_client, dcr_token)
    return context, server_envs


@contextlib.contextmanager
def serving(envs: list[dict[str, str]], root: Path) -> Iterator[list[bench.Server]]:
    started: list[bench.Server] = []
    try:

        def start(i: int, env: dict[str, str]) -> bench.Server:
            port = env["SOAK_PORT"]
            command = [bench.identity_bin(), "serve", "--host", "127.0.0.1", "--port", port,
                       "--workers", str(WORKERS)]  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            server = bench.start(command, env, url, "/readyz", root / f"server{i}.log")
            started.append(server)
            return server

        with ThreadPoolExecutor(len(envs)) as pool:  # both start at once
            list(pool.map(start, range(len(envs)), envs))
        started.sort(key=lambda server: server.url != f"http://127.0.0.1:{envs[0]['SOAK_PORT']}")
        deadline = time.monotonic() + 60
        while any(len(children(s.process.pid)) < WORKERS for s in started):
            if time.monotonic() > deadline:
                raise SoakError("the servers' workers did not all start within 60 s")
            time.sleep(0.2)
        yield started
    finally:
        for server in started:
            if server.process.poll() is None:
                server.stop()  # exits 2 unless the server stops cleanly with status 0


class Monitor:
    """Every worker's VmRSS each second, and each server's /readyz four times a second."""

    def __init__(self, servers: list[bench.Server], clock: Clock) -> None:
        self.servers = servers
        self.clock = clock
        self.rss: list[tuple[float, str, float]] = []
        self.ready: list[tuple[float, int, int]] = []  # (time, server, status; 0: no answer)
        self.stop = threading.Event()

    def memory(self) -> None:
        while not self.stop.wait(1.0):
            for i, server in enumerate(self.servers):
                for pid in children(server.process.pid):
                    mib = rss_mib(pid)
                    if mib is not None:
                        self.rss.append((self.clock(), f"s{i + 1}/{pid}", mib))

    def probes(self) -> None:
        import requests

        with requests.Session() as http:
            while not self.stop.wait(PROBE_EVERY):
                for i, server in enumerate(self.servers):
                    when = self.clock()
                    try:
                        status = http.get(server.url + "/readyz", timeout=5).status_code
                    except requests.RequestException:
                        status = 0
                    self.ready.append((when, i, status))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=t, daemon=True) for t in (self.memory, self.probes)]
        for thread in threads:
            thread.start()
        return threads


def workers_started(server: bench.Server) -> int:
    """How many workers granian has started so far (one log line each)."""
    return len(re.findall(r'"msg": "Started worker-\d+"', server.log.read_text(errors="replace")))


def kill_worker(server: bench.Server, clock: Clock) -> Fault:
    """SIGKILL one worker; the fault lasts until granian has started its replacement."""
    victim = children(server.process.pid)[0]
    started = workers_started(server)
    start = clock()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = children(server.process.pid)
        if victim not in now and len(now) >= WORKERS and workers_started(server) > started:
            return Fault("kill -9 worker", start, clock(), f"worker {victim} of server 1")
        if time.monotonic() > deadline:
            return Fault("kill -9 worker", start, clock(), "no replacement within 60 s")
        time.sleep(0.05)


def soak(
    args: argparse.Namespace,
    traffic: Traffic,
    monitor: Monitor,
    *,
    pg: PostgresCluster,
    redis: RedisServer,
    clock: Clock,
) -> list[Fault]:
    """Traffic at the set rate for the duration, with each fault at its moment."""
    plan = sorted(zip(args.fault_at, ("kill", "postgres", "redis"), strict=True))
    faults: list[Fault] = []
    threads = traffic.start(args.threads, register_every=5.0) + monitor.start()
    try:
        for at, kind in plan:
            time.sleep(max(0.0, at * args.duration - clock()))
            print(f"soak: {clock():5.1f} s: {kind}", file=sys.stderr)
            if kind == "kill":
                faults.append(kill_worker(monitor.servers[0], clock))
                continue
            service = pg if kind == "postgres" else redis
            start = clock()
            service.stop()
            down = clock()
            if kind == "redis":  # the limited requests are exercised whatever the mix
                time.sleep(0.5)
                traffic.probe_limits()
            time.sleep(max(0.0, down + args.outage - clock()))
            back_from = clock()
            service.start()
            name = "PostgreSQL restart" if kind == "postgres" else "Redis down"
            faults.append(Fault(name, start, clock(), down=down, back_from=back_from))
        time.sleep(max(0.0, args.duration - clock()))
    finally:
        traffic.join(threads[: args.threads + 1])
        monitor.stop.set()
    return faults


def measure_peak(args: argparse.Namespace, traffic: Traffic) -> float:
    threads = traffic.start(args.threads)
    started, before = time.monotonic(), traffic.operations
    time.sleep(args.peak_seconds)
    done, elapsed = traffic.operations - before, time.monotonic() - started
    traffic.join(threads)
    return done / elapsed


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI form: about a minute")
    parser.add_argument("--duration", type=float, help="seconds of soak (default 300; short 42)")
    parser.add_argument("--rate", type=float, help="operations/s (default: 70 %% of the peak)")
    parser.add_argument(
        "--peak-seconds", type=float, help="seconds to measure the peak (20; short 6)"
    )
    parser.add_argument(
        "--outage", type=float, help="seconds PostgreSQL and Redis stay down (10; 4)"
    )
    parser.add_argument("--threads", type=int, default=12, help="load generator threads (12)")
    parser.add_argument("--users", type=int, default=8, help="users signing in (8)")
    parser.add_argument(
        "--same-user-at-once",
        action="store_true",
        help="let one user run several code flows at once (reproduces the consent race)",
    )
    parser.add_argument("--chart", type=Path, help="PNG to write (default: in the soak folder)")
    parser.add_argument("--report", type=Path, help="markdown file to write the report to")
    parser.add_argument("--keep", action="store_true", help="keep the soak folder (logs, data)")
    args = parser.parse_args(argv)
    short = args.short
    args.duration = args.duration or (42.0 if short else 300.0)
    args.peak_seconds = args.peak_seconds or (6.0 if short else 20.0)
    args.outage = args.outage or (4.0 if short else 10.0)
    args.fault_at = (0.15, 0.35, 0.65)  # kill, PostgreSQL, Redis: fractions of the duration
    # PostgreSQL and Redis stop 30 % of the duration apart: an outage and its recovery fit.
    if args.duration < MIN_DURATION or args.outage + RECOVERY + 1 > args.duration * 0.3:
        parser.error("--duration must be at least 30 s and leave room for the outages")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="identity-soak-"))
    print(f"soak: folder {root}", file=sys.stderr)
    pg, redis = PostgresCluster(root), RedisServer(root)
    try:
        pg.init()
        redis.start()
        ctx, envs = prepare(args, root, pg, redis)
        progress("prepared the database, clients and users")
        with serving(envs, root) as servers:
            progress("two servers ready")
            clock = Clock()
            traffic = Traffic(ctx, clock)
            traffic.same_user_at_once = args.same_user_at_once
            soak_checks.warm_up(traffic)
            progress("warmed up")
            peak = measure_peak(args, traffic)
            warm_problems = soak_checks.errors_in(traffic.samples)
            traffic.rate = args.rate or 0.7 * peak
            print(
                f"soak: peak {peak:.1f} operations/s; soaking at {traffic.rate:.1f} for "
                f"{args.duration:.0f} s",
                file=sys.stderr,
            )
            traffic.samples.clear()
            clock.reset()
            monitor = Monitor(servers, clock)
            faults = soak(args, traffic, monitor, pg=pg, redis=redis, clock=clock)
            soaked = list(traffic.samples)
            progress("soaked")
            violations, findings = soak_checks.check(args, traffic, monitor, faults, pg)
            progress("checked the ledger")
            violations = warm_problems + violations
            rows = buckets(soaked, monitor.rss, args.duration)
            chart_path = args.chart or root / "soak.png"
            chart(rows, faults, monitor.rss, chart_path)
            progress("drew the chart; stopping the servers")
        violations += soak_checks.server_logs(root)
        traffic.samples = soaked
    except SoakError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    finally:
        redis.close()
        pg.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = soak_checks.summary(args, traffic, peak, violations, findings)
    text += "\n\n" + table(rows, faults)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    print(
        f"soak: chart {chart_path}" + ("" if args.keep or args.chart else " (removed)"),
        file=sys.stderr,
    )
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
