#!/usr/bin/env python3
"""Benchmark identity's hot endpoints next to a Flask "hello world" on the same server.

Run it with the Python environment identity is installed in, from anywhere:

    python bench/run.py                      # granian, 2 workers, 16 connections, 10 s
    python bench/run.py --server gunicorn    # the same with gunicorn sync workers
    python bench/run.py --only token,introspection --duration 5 --no-write

It needs PostgreSQL (``--database-url``, an account that may create databases) and wrk
(Debian/Ubuntu: ``apt-get install wrk``; macOS: ``brew install wrk``). It creates a fresh
database, runs ``identity init``, registers the clients and a user, mints refresh tokens,
then for every endpoint starts ``identity serve`` afresh, checks one request by hand, warms
up, runs wrk, stops the server with SIGTERM (it must exit 0) and counts the rows PostgreSQL
wrote meanwhile. The table goes to standard output and, unless ``--no-write``, into
docs/performance.md between the ``bench:<server>`` markers.
"""

# ruff: noqa: S603, S607 - runs local tools (identity, wrk) and fetches loopback URLs
from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import memory as memory_run
import peers
import populate
import scale
from harness import BENCH, Load, Result, Server, check, fail, free_port, start, wrk

DOC = BENCH.parent / "docs" / "performance.md"
# The results of each server go between their own markers in docs/performance.md.
MARKERS = "<!-- bench:{server}:begin -->", "<!-- bench:{server}:end -->"
ENDPOINTS = ("token", "introspection", "userinfo", "jwks", "discovery", "refresh", "authz")
LABELS = {
    "hello": 'Flask "hello world" (ceiling)',
    "statement": "hello world + introspection's SQL statement (ceiling of one look-up)",
    "token": "token (client_credentials)",
    "introspection": "introspection (JWT access token)",
    "userinfo": "UserInfo",
    "jwks": "JWKS",
    "discovery": "discovery",
    "refresh": "token (refresh_token, rotating)",
    "authz": "decision API (/api/v1/authz/check)",
    "signin": "password sign-in (POST /sign-in)",
}
USER_EMAIL = "bench@example.org"
USER_SCOPE = "openid profile email offline_access"
TOKENS_PER_COMMIT = 2000  # refresh tokens written per transaction while filling the pools


# Setup ----------------------------------------------------------------------------------


@dataclass
class Setup:
    env: dict[str, str]
    database_url: str
    issuer: str
    port: int
    service_auth: str  # Basic header of the client_credentials client
    resource_auth: str  # Basic header of the resource server (introspection)
    admin_token: str  # an identity:admin token of a service account holding auditor
    rp_auth: str  # Basic header of the code-flow client that holds the refresh tokens
    access_token: str  # a user's JWT access token (UserInfo, introspection)
    user_id: str  # its subject
    refresh_file: Path
    refresh_warmup_file: Path
    refresh_check: str
    files: Path
    rp_client_id: str = ""  # to mint more tokens later (mint_tokens)
    auditor_client_id: str = ""


def identity_bin() -> str:
    local = Path(sys.executable).parent / "identity"
    found = str(local) if local.exists() else shutil.which("identity")
    if not found:
        fail("the `identity` command is not installed in this environment")
    return str(found)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [identity_bin(), *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        fail(f"identity {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def create_client(env: dict[str, str], *args: str) -> str:
    out = json.loads(run_cli(env, "clients", "create", "--json", *args))
    return basic(out["client_id"], out["client_secret"])


def database(admin_url: str, name: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mint_tokens(
    env: dict[str, str], rp_client_id: str, pools: dict[Path, int], auditor_id: str
) -> tuple[str, str]:
    """A user access token and pools of refresh tokens, minted through the app's own
    TokenService (as the code flow would store them: one grant family per token)."""
    from sqlalchemy import select

    from identity import create_app
    from identity.extensions import db
    from identity.models.base import utcnow
    from identity.models.user import User
    from identity.oauth.tokens import GrantContext
    from identity.settings import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        app = create_app(load_settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with app.app_context():
        rt = app.extensions["identity"]
        client = rt.clients.get(db.session, rp_client_id)
        user = db.session.execute(select(User).where(User.email == USER_EMAIL)).scalar_one()

        def context() -> GrantContext:
            return GrantContext(
                client=client,
                scope=USER_SCOPE,
                user=user,
                auth_time=utcnow(),
                amr=["pwd"],
                family_id=uuid.uuid4(),
            )

        access_token, _ = rt.tokens.access_token(db.session, context())
        auditor = GrantContext(
            client=rt.clients.get(db.session, auditor_id), scope="identity:admin"
        )
        admin_token, _ = rt.tokens.access_token(db.session, auditor)
        for path, count in pools.items():
            with path.open("w") as out:
                for i in range(count):
                    out.write(rt.tokens.store_refresh_token(db.session, context()) + "\n")
                    if i % TOKENS_PER_COMMIT == TOKENS_PER_COMMIT - 1:
                        db.session.commit()
            db.session.commit()
        db.engine.dispose()
    return str(access_token), str(admin_token)


def prepare(args: argparse.Namespace, files: Path) -> Setup:
    name = f"identity_bench_{uuid.uuid4().hex[:8]}"
    database_url = database(args.database_url, name)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_ENV="production",
        IDENTITY_INSTANCE_PATH=str(files / "instance"),
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_ISSUER=issuer,
        IDENTITY_SECRET_KEY=secrets.token_urlsafe(32),
        IDENTITY_LOG_LEVEL="INFO",
    )
    print(f"bench: database {name}, instance {files / 'instance'}", file=sys.stderr)
    run_cli(env, "init", "--admin-email", "admin@example.org")
    service = create_client(
        env, "--name", "bench service", "--grant-type", "client_credentials", "--scope", "roles"
    )
    resource = create_client(
        env,
        "--name",
        "bench resource server",
        "--grant-type",
        "client_credentials",
        "--scope",
        "roles",
        "--resource-server",
    )
    auditor = json.loads(
        run_cli(
            env,
            "clients",
            "create",
            "--json",
            "--name",
            "bench auditor",
            "--grant-type",
            "client_credentials",
            "--scope",
            "roles",
            "--role",
            "auditor",
        )
    )
    rp_out = json.loads(
        run_cli(
            env,
            "clients",
            "create",
            "--json",
            "--name",
            "bench relying party",
            "--redirect-uri",
            "https://rp.example.org/cb",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            USER_SCOPE,
            "--first-party",
        )
    )
    user_id = run_cli(  # prints the new user's id
        env,
        "users",
        "create",
        USER_EMAIL,
        "--password-stdin",
        "--verified",
        "--name",
        "Bench User",
        stdin=secrets.token_urlsafe(16) + "\n",
    )
    refresh_file = files / "refresh.txt"
    warmup_file = files / "refresh-warmup.txt"
    check_file = files / "refresh-check.txt"
    pools = {refresh_file: 0, warmup_file: 0, check_file: 1}
    if "refresh" in args.only:
        pools[refresh_file] = args.refresh_pool
        pools[warmup_file] = max(1, args.refresh_pool * args.warmup // max(args.duration, 1))
    started = time.monotonic()
    access_token, admin_token = mint_tokens(env, rp_out["client_id"], pools, auditor["client_id"])
    print(
        f"bench: minted {sum(pools.values())} refresh tokens in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return Setup(
        env=env,
        database_url=database_url,
        issuer=issuer,
        port=port,
        service_auth=service,
        resource_auth=resource,
        admin_token=admin_token,
        rp_auth=basic(rp_out["client_id"], rp_out["client_secret"]),
        access_token=access_token,
        user_id=user_id.split()[0],
        refresh_file=refresh_file,
        refresh_warmup_file=warmup_file,
        refresh_check=check_file.read_text().strip(),
        files=files,
        rp_client_id=rp_out["client_id"],
        auditor_client_id=auditor["client_id"],
    )


def fresh_tokens(
    args: argparse.Namespace, setup: Setup, phase: str, *, refresh: bool = True
) -> Setup:
    """The setup with new access tokens (they live 10 minutes) and, when refresh is
    measured, a new refresh pool (each token is spent once): for a later phase."""
    pools = {setup.files / f"refresh-check-{phase}.txt": 1}
    run_file = setup.files / f"refresh-{phase}.txt"
    warm_file = setup.files / f"refresh-warmup-{phase}.txt"
    if refresh and "refresh" in args.only:
        pools[run_file] = args.refresh_pool
        pools[warm_file] = max(1, args.refresh_pool * args.warmup // max(args.duration, 1))
    access, admin = mint_tokens(setup.env, setup.rp_client_id, pools, setup.auditor_client_id)
    return dataclasses.replace(
        setup,
        access_token=access,
        admin_token=admin,
        refresh_file=run_file,
        refresh_warmup_file=warm_file,
        refresh_check=next(iter(pools)).read_text().strip(),
    )


# Servers --------------------------------------------------------------------------------


@contextlib.contextmanager
def identity_server(args: argparse.Namespace, setup: Setup) -> Iterator[Server]:
    command = [
        identity_bin(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(setup.port),
        "--workers",
        str(args.workers),
        "--server",
        args.server,
    ]
    server = start(command, setup.env, setup.issuer, "/readyz", setup.files / "identity.log")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def hello_server(args: argparse.Namespace, setup: Setup) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable,
        str(BENCH / "hello.py"),
        "--server",
        args.server,
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--database-url",
        setup.database_url,
        "--user-id",
        setup.user_id,
    ]
    url = f"http://127.0.0.1:{port}"
    server = start(command, setup.env, url, "/", setup.files / "hello.log")
    try:
        yield server
    finally:
        server.stop()


def rows_written(database_url: str, settle: bool = False) -> int:
    """Rows inserted, updated or deleted in the benchmark database so far (PostgreSQL
    statistics; a backend reports its counts when it exits, so wait for them to settle)."""
    import psycopg

    def read() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)"
                " FROM pg_stat_user_tables"
            ).fetchone()
            return int(row[0]) if row else 0

    value = read()
    if settle:
        for _ in range(20):
            time.sleep(0.5)
            again = read()
            if again == value:
                break
            value = again
    return value


# wrk ------------------------------------------------------------------------------------


def loads(setup: Setup) -> dict[str, tuple[Load, str]]:
    bearer = f"Bearer {setup.access_token}"
    return {
        "token": (
            Load(
                "/oauth/token",
                "POST",
                setup.service_auth,
                "grant_type=client_credentials",
                "post.lua",
            ),
            "access_token",
        ),
        "introspection": (
            Load(
                "/oauth/introspect",
                "POST",
                setup.resource_auth,
                f"token={setup.access_token}&token_type_hint=access_token",
                "post.lua",
            ),
            "active",
        ),
        "userinfo": (Load("/userinfo", "GET", bearer), "sub"),
        "jwks": (Load("/jwks.json"), "keys"),
        "discovery": (Load("/.well-known/openid-configuration"), "issuer"),
        "authz": (
            Load(
                "/api/v1/authz/check",
                "POST",
                f"Bearer {setup.admin_token}",
                json.dumps(
                    {"subject": {"user_id": setup.user_id}, "permission": "invoices:approve"}
                ),
                "post.lua",
                content_type="application/json",
            ),
            "allowed",
        ),
        "refresh": (
            Load(
                "/oauth/token",
                "POST",
                setup.rp_auth,
                f"grant_type=refresh_token&refresh_token={setup.refresh_check}",
                "refresh.lua",
            ),
            "refresh_token",
        ),
    }


def measure(args: argparse.Namespace, setup: Setup, name: str, load: Load, expect: str) -> Result:
    before = rows_written(setup.database_url, settle=True)
    with identity_server(args, setup) as server:
        check(server.url, load, expect)
        if name == "refresh":
            warm = Load(
                load.path,
                "POST",
                load.auth,
                "",
                "refresh.lua",
                [str(setup.refresh_warmup_file), str(args.threads)],
            )
            run = Load(
                load.path,
                "POST",
                load.auth,
                "",
                "refresh.lua",
                [str(setup.refresh_file), str(args.threads)],
            )
        else:
            warm = run = load
        warmed = wrk(args, server.url, warm, args.warmup, name) if args.warmup else Result(name)
        result = wrk(args, server.url, run, args.duration, name)
    after = rows_written(setup.database_url, settle=True)
    total = 1 + warmed.requests + result.requests
    result.rows_per_request = (after - before) / total
    if warmed.non_2xx:
        result.notes.append(f"{warmed.non_2xx} non-2xx during warm-up")
    return result


# Report ---------------------------------------------------------------------------------


def versions(setup: Setup | None) -> str:
    names = [
        "identity",
        "flask",
        "werkzeug",
        "authlib",
        "joserfc",
        "sqlalchemy",
        "psycopg",
        "cryptography",
        "granian",
        "gunicorn",
    ]
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    found.insert(0, f"Python {platform.python_version()}")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", wrk_version.stdout + wrk_version.stderr)
    if match:
        found.append(f"wrk {match.group(1)}")
    if setup is not None:
        import psycopg

        with psycopg.connect(setup.database_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            found.append(f"PostgreSQL {str(row[0]).split()[0] if row else '?'}")
    return ", ".join(found)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


@dataclass
class Extras:
    """What the optional parts of a run measured (--peers, --populated, --rss-requests)."""

    peer: str = ""  # the peer's name and version
    peer_results: dict[str, Result] = field(default_factory=dict)
    population: str = ""  # what the full database holds
    empty: dict[str, Result] = field(default_factory=dict)  # endpoint -> on the empty database
    full: dict[str, Result] = field(default_factory=dict)  # the same on the full one
    memory: memory_run.Memory | None = None


def errors_of(result: Result) -> str:
    errors = []
    if result.non_2xx:
        errors.append(f"{result.non_2xx} non-2xx")
    if result.socket_errors:
        errors.append(f"{result.socket_errors} socket errors")
    return ", ".join(errors + result.notes) or "none"


def table(
    results: list[Result],
    hello: Result | None,
    ceilings: list[Result],
    peer_results: dict[str, Result] | None = None,
) -> str:
    """The main table; with --peers, the peer's requests/s and p50 and identity's ratio."""
    head = "| Endpoint | Requests/s | p50 (ms) | p99 (ms) | % of hello world "
    head += "| DB rows written per request | Errors |"
    rule = "|---|---:|---:|---:|---:|---:|---|"
    if peer_results:
        head += f" {peers.NAME}: requests/s | {peers.NAME}: p50 (ms) | identity / peer |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for result in ([hello] if hello else []) + ceilings + results:
        share = f"{100 * result.rps / hello.rps:.0f} %" if hello and hello.rps else "-"
        rows = "-" if result.rows_per_request is None else f"{result.rows_per_request:.2f}"
        line = (
            f"| {LABELS[result.name]} | {result.rps:,.0f} | {result.p50:.2f} | {result.p99:.2f} "
            f"| {share} | {rows} | {errors_of(result)} |"
        )
        if peer_results:
            peer = peer_results.get(result.name)
            if peer is None:
                line += " - | - | - |"
            else:
                errors = "" if errors_of(peer) == "none" else f" ({errors_of(peer)})"
                ratio = f"{result.rps / peer.rps:.2f}" if peer.rps else "-"
                line += f" {peer.rps:,.0f}{errors} | {peer.p50:.2f} | {ratio} |"
        lines.append(line)
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    setup: Setup,
    results: list[Result],
    *,
    hello: Result | None,
    ceilings: list[Result],
    load_before: tuple[float, float, float],
    extras: Extras,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    threads = ""
    if args.server == "granian":
        from identity.serving import GRANIAN_THREADS

        threads = f", {GRANIAN_THREADS} threads each"
    lines = [
        f"Measured {now} with `python bench/run.py"
        + (f" {' '.join(args.argv)}" if args.argv else "")
        + "`.",
        "",
        f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} "
        f"{platform.release()}; load average before the run "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}.",
        f"- Server: {args.server}, {args.workers} workers{threads}; identity with "
        "IDENTITY_ENV=production, INFO logging (one JSON line per request) to a file, "
        "PostgreSQL on the same machine.",
        f"- Load: wrk on the same machine, {args.threads} threads, {args.connections} "
        f"connections, {args.duration} s per endpoint after a {args.warmup} s warm-up.",
        f"- Versions: {versions(setup)}.",
    ]
    if extras.peer:
        lines.append(
            f"- Peer: {extras.peer}, one process, tokens in its memory (bench/peers/), started "
            "afresh for each endpoint right after identity's run of it; its introspection "
            "reads an opaque token (it cannot introspect a JWT)."
        )
    lines += ["", table(results, hello, ceilings, extras.peer_results)]
    if extras.full:
        lines += [
            "",
            f"On the full database ({extras.population}), next to the empty one above; "
            "sign-in: POST /sign-in with a password, each request a different account "
            "(on the empty database, accounts added for it).",
            "",
            scale.comparison(extras.empty, extras.full, LABELS),
        ]
    if extras.memory and extras.memory.readings:
        mem = extras.memory
        lines += [
            "",
            f"Resident memory (VmRSS) of each server worker, under a round-robin mix of client "
            f"credentials, introspection and UserInfo: {mem.requests:,} requests in "
            f"{mem.seconds:.0f} s, {mem.non_2xx} non-2xx, {mem.socket_errors} socket errors.",
            "",
            mem.table(),
        ]
    return "\n".join(lines)


def write_doc(path: Path, text: str, server: str) -> None:
    begin, end = (marker.format(server=server) for marker in MARKERS)
    block = f"{begin}\n{text}\n{end}"
    if path.exists():
        current = path.read_text()
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            tail = rest.split(end, 1)[1]
            path.write_text(head + block + tail)
            return
        heading = f"\n\n## Latest results: {server}\n\n"
        path.write_text(current.rstrip("\n") + heading + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Performance\n\n## Latest results: {server}\n\n{block}\n")


# Main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint (10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds (2)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated endpoints to measure (default: all of {','.join(ENDPOINTS)})",
    )
    parser.add_argument("--no-hello", action="store_true", help="skip the hello-world ceilings")
    parser.add_argument(
        "--refresh-pool",
        type=int,
        default=25_000,
        help="refresh tokens minted for the refresh run; each is used once (25000)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL URL of an account that may create databases "
        "[BENCH_DATABASE_URL; default postgresql://postgres@127.0.0.1:5432/postgres]",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help=f"measure {peers.NAME} too (installed into bench/.peers with npm), with ratios",
    )
    parser.add_argument(
        "--populated",
        action="store_true",
        help="then fill the database (bench/populate.py) and measure the hot endpoints and "
        "a password sign-in again on it, next to the empty database",
    )
    parser.add_argument("--populate-users", type=int, default=1_000_000, help="(1000000)")
    parser.add_argument("--populate-grants", type=int, default=10_000_000, help="(10000000)")
    parser.add_argument("--populate-revocations", type=int, default=5_000, help="(5000)")
    parser.add_argument(
        "--signin-pool",
        type=int,
        default=5_000,
        help="accounts for the sign-in runs; each signs in once (5000)",
    )
    parser.add_argument(
        "--rss-requests",
        type=int,
        default=None,
        help="requests of the memory run, which reads each worker's RSS (1000000 unless "
        "--only is given, then none; 0: skip)",
    )
    parser.add_argument("--output", type=Path, default=DOC, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.rss_requests is None:  # a partial run (--only) skips the long memory run
        args.rss_requests = 0 if args.only else 1_000_000
    args.only = [name.strip() for name in (args.only or ",".join(ENDPOINTS)).split(",")]
    args.only = [name for name in args.only if name]
    unknown = set(args.only) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    for name in ("rss_requests", "populate_users", "populate_grants", "populate_revocations"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} cannot be negative")
    if args.populated and args.signin_pool < 3:  # noqa: PLR2004 - check, warm-up, run
        parser.error("--signin-pool must be at least 3")
    if args.populated and args.populate_users < args.signin_pool:
        parser.error("--populate-users must be at least --signin-pool (each signs in once)")
    if args.rss_requests and not Path("/proc/self/status").exists():
        parser.error("the memory run reads /proc (Linux); pass --rss-requests 0 elsewhere")
    return args


def measure_peers(args: argparse.Namespace, peer: peers.Peer | None, name: str) -> Result | None:
    if peer is None or name not in peers.ENDPOINTS:
        return None
    result = peers.measure(args, peer, name)
    print(f"bench: {peers.NAME} {name} {result.rps:,.0f} req/s", file=sys.stderr)
    return result


def measure_full(args: argparse.Namespace, setup: Setup, extras: Extras) -> None:
    """Sign-in on the empty database, then the population, then the hot endpoints and
    sign-in again (--populated)."""

    def serve() -> contextlib.AbstractContextManager[Server]:
        return identity_server(args, setup)

    pool = scale.empty_pool(setup.database_url, args.signin_pool)
    extras.empty["signin"] = scale.measure_sign_in(
        args, setup.database_url, setup.files, pool, serve
    )
    print(f"bench: signin (empty) {extras.empty['signin'].rps:,.0f} req/s", file=sys.stderr)
    counts = populate.fill(
        setup.database_url,
        users=args.populate_users,
        grants=args.populate_grants,
        revocations=args.populate_revocations,
    )
    extras.population = (
        f"{counts.users:,} users, {counts.grants:,} grants, {counts.revocations:,} revoked "
        f"token keys, filled in {counts.seconds:.0f} s"
    )
    setup = fresh_tokens(args, setup, "full")
    all_loads = loads(setup)
    for name in [name for name in args.only if name in scale.HOT]:
        load, expect = all_loads[name]
        extras.full[name] = measure(args, setup, name, load, expect)
        print(f"bench: {name} (full) {extras.full[name].rps:,.0f} req/s", file=sys.stderr)
    pool = scale.full_pool(args.populate_users, args.signin_pool)
    extras.full["signin"] = scale.measure_sign_in(
        args, setup.database_url, setup.files, pool, serve
    )
    print(f"bench: signin (full) {extras.full['signin'].rps:,.0f} req/s", file=sys.stderr)


def measure_memory(args: argparse.Namespace, setup: Setup) -> memory_run.Memory:
    def mix() -> list[tuple[str, str, str, str]]:
        fresh = fresh_tokens(args, setup, "memory", refresh=False)
        introspect = f"token={fresh.access_token}&token_type_hint=access_token"
        return [
            ("POST", "/oauth/token", fresh.service_auth, "grant_type=client_credentials"),
            ("POST", "/oauth/introspect", fresh.resource_auth, introspect),
            ("GET", "/userinfo", f"Bearer {fresh.access_token}", ""),
        ]

    def serve() -> contextlib.AbstractContextManager[Server]:
        return identity_server(args, setup)

    print(f"bench: memory run, {args.rss_requests:,} requests", file=sys.stderr)
    return memory_run.measure(args, setup.files, mix, serve)


def measure_hello(args: argparse.Namespace, setup: Setup) -> tuple[Result, list[Result]]:
    """The two ceilings: the hello world, and it with introspection's SQL statement."""
    found = []
    with hello_server(args, setup) as server:
        for name, path in (("hello", "/"), ("statement", "/statement")):
            load = Load(path)
            check(server.url, load, "Hello, World!")
            if args.warmup:
                wrk(args, server.url, load, args.warmup, name)
            found.append(wrk(args, server.url, load, args.duration, name))
            print(f"bench: {name} {found[-1].rps:,.0f} req/s", file=sys.stderr)
    return found[0], found[1:]


def clean_up(args: argparse.Namespace, setup: Setup) -> None:
    files = setup.files
    if not args.keep:
        name = setup.database_url.rsplit("/", 1)[1]
        drop_database(args.database_url, name)
        shutil.rmtree(files, ignore_errors=True)
        return
    # Everything needed to rerun a measurement by hand: the server's environment
    # and each endpoint's request (wrk with bench/*.lua, BENCH_AUTH, BENCH_BODY).
    saved = {
        "env": {k: v for k, v in setup.env.items() if k.startswith("IDENTITY_")},
        "loads": {name: vars(load) for name, (load, _) in loads(setup).items()},
        "refresh_tokens": str(setup.refresh_file),
    }
    (files / "bench.json").write_text(json.dumps(saved, indent=2))
    print(f"bench: kept {files} (bench.json) and {setup.database_url}", file=sys.stderr)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        fail(
            "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), `brew install wrk` "
            "(macOS), or build it from https://github.com/wg/wrk"
        )
    load_before = os.getloadavg()
    files = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    peer = peers.install(files) if args.peers else None
    setup = prepare(args, files)
    results: list[Result] = []
    hello: Result | None = None
    ceilings: list[Result] = []
    extras = Extras(peer=peer.version() if peer else "")
    try:
        if not args.no_hello:
            hello, ceilings = measure_hello(args, setup)
        all_loads = loads(setup)
        for name in args.only:
            load, expect = all_loads[name]
            result = measure(args, setup, name, load, expect)
            results.append(result)
            print(f"bench: {name} {result.rps:,.0f} req/s", file=sys.stderr)
            if peer_result := measure_peers(args, peer, name):
                extras.peer_results[name] = peer_result
        if args.rss_requests:
            extras.memory = measure_memory(args, setup)
        if args.populated:
            extras.empty = {result.name: result for result in results if result.name in scale.HOT}
            measure_full(args, setup, extras)
        text = report(
            args,
            setup,
            results,
            hello=hello,
            ceilings=ceilings,
            load_before=load_before,
            extras=extras,
        )
    finally:
        clean_up(args, setup)
    print(text)
    if not args.no_write:
        write_doc(args.output, text, args.server)
        print(f"bench: wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
