"""The benchmark on a full database, for ``bench/run.py --populated``: password sign-in,
and the table that puts each hot endpoint on the empty and the full database side by side.

Sign-in is measured with wrk like everything else (bench/signin.lua): one GET of the form
gives a Flask session cookie and its CSRF token, which every POST then reuses (the token
lives as long as that session); each POST signs in a different account of a pool, once, so
that no account's throttle or new-device mail weighs on the run. On the empty database the
pool is made of accounts added for it (bench/populate.py, under ``signin.<domain>``); on the
full one it is drawn at random from the million populated accounts. Every pool account has
populate.PASSWORD.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import random
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import populate
from harness import Load, Result, Server, fail, wrk

SIGN_IN_DOMAIN = f"signin.{populate.DOMAIN}"
SIGN_IN_SEED = 41  # not populate's default
# The endpoints measured again on the full database: those that read or write it per request.
HOT = ("token", "introspection", "userinfo", "refresh", "authz")


def empty_pool(database_url: str, count: int) -> list[str]:
    """``count`` accounts added to a database that has none of populate's, for sign-in."""
    # Another seed than the population's, or their ids would collide when it follows.
    populate.fill(
        database_url, users=count, grants=0, revocations=0, domain=SIGN_IN_DOMAIN, seed=SIGN_IN_SEED
    )
    return [populate.email(n, SIGN_IN_DOMAIN) for n in range(count)]


def full_pool(users: int, count: int, seed: int = 1) -> list[str]:
    """``count`` of the populated accounts, at random across the whole table."""
    rng = random.Random(seed)  # noqa: S311 - which accounts sign in, reproducibly
    return [populate.email(n) for n in rng.sample(range(users), min(count, users))]


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)


def form_session(url: str) -> tuple[str, str]:
    """The Cookie header and CSRF token of a fresh sign-in form."""
    conn = _connection(url)
    try:
        conn.request("GET", "/sign-in")
        response = conn.getresponse()
        html = response.read().decode()
        cookies = [
            value.split(";", 1)[0]
            for name, value in response.getheaders()
            if name.lower() == "set-cookie"
        ]
    finally:
        conn.close()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    if response.status != http.HTTPStatus.OK or not match or not cookies:
        fail(f"GET /sign-in answered {response.status} without a CSRF token and cookie")
    return "; ".join(cookies), match.group(1) if match else ""


def check_sign_in(url: str, cookie: str, csrf: str, email: str) -> None:
    """One sign-in by hand: a success is a redirect (303) that sets the session cookie; a
    failure answers 200 with the form again, which wrk would count as a success."""
    body = urllib.parse.urlencode(
        {"csrf_token": csrf, "email": email, "password": populate.PASSWORD, "next": ""}
    )
    conn = _connection(url)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        conn.request("POST", "/sign-in", body, headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        conn.close()
    if response.status != http.HTTPStatus.SEE_OTHER:
        error = re.search(r'class="[^"]*error[^"]*"[^>]*>([^<]+)', text)
        detail = error.group(1).strip() if error else text[:200]
        fail(f"sign-in of {email} answered {response.status}, not 303: {detail}")


def signed_in(database_url: str, emails: list[str]) -> int:
    """How many of these accounts have signed in (to tell successes from failed forms)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM users WHERE email = ANY(%s) AND last_sign_in_at IS NOT NULL",
            [emails],
        ).fetchone()
    return int(row[0]) if row else 0


def measure_sign_in(
    args: argparse.Namespace,
    database_url: str,
    files: Path,
    emails: list[str],
    serve: Callable[[], contextlib.AbstractContextManager[Server]],
) -> Result:
    """wrk on POST /sign-in: the first account is checked by hand, a share of the rest is
    spent on the warm-up, the others on the measurement."""
    if len(emails) < 3:  # noqa: PLR2004 - one to check, one to warm up, one to measure
        fail("--signin-pool must be at least 3")
    warm_count = max(1, (len(emails) - 1) * args.warmup // (args.warmup + args.duration))
    warm, run = emails[1 : 1 + warm_count], emails[1 + warm_count :]
    pools = {}
    for name, part in (("warm", warm), ("run", run)):
        pools[name] = files / f"signin-{name}-{emails[0].split('@', 1)[1]}.txt"
        pools[name].write_text("".join(f"{email}\n" for email in part))
    with serve() as server:
        cookie, csrf = form_session(server.url)
        check_sign_in(server.url, cookie, csrf, emails[0])
        env = {"BENCH_COOKIE": cookie, "BENCH_CSRF": csrf, "BENCH_PASSWORD": populate.PASSWORD}

        def load(pool: Path) -> Load:
            return Load(
                "/sign-in",
                "POST",
                script="signin.lua",
                script_args=[str(pool), str(args.threads)],
                env=env,
            )

        warmed = 0
        if args.warmup:
            warmed = wrk(args, server.url, load(pools["warm"]), args.warmup, "signin").requests
        result = wrk(args, server.url, load(pools["run"]), args.duration, "signin")
    done = signed_in(database_url, emails)
    answered = 1 + warmed + result.requests
    if done < min(answered, len(emails)) - args.connections:  # in flight when wrk stopped
        result.notes.append(f"only {done} of about {answered} sign-ins succeeded")
    return result


def comparison(empty: dict[str, Result], full: dict[str, Result], labels: dict[str, str]) -> str:
    """The hot endpoints on the empty and the full database, the p50 ratio last."""
    lines = [
        "| Endpoint | Empty: requests/s | Empty: p50 (ms) | Full: requests/s | Full: p50 (ms) "
        "| p50 full / empty | Errors (full) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, after in full.items():
        before = empty.get(name)
        errors = [*after.notes]
        if after.non_2xx:
            errors.append(f"{after.non_2xx} non-2xx")
        if after.socket_errors:
            errors.append(f"{after.socket_errors} socket errors")
        if before is None:
            lines.append(
                f"| {labels[name]} | - | - | {after.rps:,.0f} | {after.p50:.2f} | - "
                f"| {', '.join(errors) or 'none'} |"
            )
            continue
        ratio = f"{after.p50 / before.p50:.2f}" if before.p50 else "-"
        lines.append(
            f"| {labels[name]} | {before.rps:,.0f} | {before.p50:.2f} | {after.rps:,.0f} "
            f"| {after.p50:.2f} | {ratio} | {', '.join(errors) or 'none'} |"
        )
    return "\n".join(lines)
