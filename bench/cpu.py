#!/usr/bin/env python3
"""CPU cost per request of each benchmarked endpoint, without a server or a load generator.

    python bench/cpu.py                       # CPU microseconds per request, each endpoint
    python bench/cpu.py token -n 5000 --pyinstrument     # where the time goes
    python bench/cpu.py introspection --cprofile         # the same with cProfile

It prepares a database exactly as bench/run.py does, builds the app in this process and
calls its WSGI callable directly, so the numbers are the application's own cost per request
(what bounds requests/s per core), steady even on a busy machine where wrk numbers are not.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py, next to this file

HELLO = "hello"


def environ_factory(load: bench.Load, issuer: str) -> Callable[[], dict[str, Any]]:
    from werkzeug.test import EnvironBuilder

    headers = {"Authorization": load.auth} if load.auth else {}
    if load.method == "POST":
        headers["Content-Type"] = load.content_type
    base = EnvironBuilder(
        path=load.path,
        base_url=issuer,
        method=load.method,
        headers=headers,
        data=load.body.encode() if load.method == "POST" else None,
    ).get_environ()
    body = load.body.encode()

    def make() -> dict[str, Any]:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        return environ

    return make


def call(app: Any, make: Callable[[], dict[str, Any]]) -> str:
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    iterable = app(make(), start_response)
    try:
        for _ in iterable:
            pass
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    return status[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("endpoints", nargs="*", default=[HELLO, *bench.ENDPOINTS])
    parser.add_argument("-n", type=int, default=2000, help="requests per endpoint (2000)")
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument tree")
    parser.add_argument(
        "--all-frames", action="store_true", help="pyinstrument: show library frames too"
    )
    parser.add_argument("--cprofile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key (cumulative)")
    parser.add_argument("--top", type=int, default=45, help="cProfile lines (45)")
    parser.add_argument(
        "--database-url",
        default=bench.parse_args([]).database_url,
        help="PostgreSQL URL of an account that may create databases",
    )
    args = parser.parse_args()
    options = bench.parse_args(
        ["--database-url", args.database_url, "--refresh-pool", str(args.n + 100)]
    )
    options.only = ["refresh"] if "refresh" in args.endpoints else []
    files = Path(tempfile.mkdtemp(prefix="identity-profile-"))
    setup = bench.prepare(options, files)
    try:
        profile(args, setup)
    finally:
        bench.drop_database(args.database_url, setup.database_url.rsplit("/", 1)[1])


def listen(app: Any) -> None:
    """Start the change listener a serving worker runs, and wait until its revocation
    state is loaded: checks then answer from memory, as in the server."""
    from identity.change_listener import ChangeListener
    from identity.extensions import db

    rt = app.extensions["identity"]
    with app.app_context():
        ChangeListener(rt.changes, db.engine, rt.settings.change_channel_url).start()
    deadline = time.monotonic() + 10
    while not rt.tokens.revocations.current:
        if time.monotonic() > deadline:
            sys.exit("bench: the change listener did not load the revocation state")
        time.sleep(0.01)


class RoundTrips:
    """Counts what each request asks of the database: SQL statements, and round trips
    (the statements plus BEGIN, COMMIT and the pool's pre-ping at check-out)."""

    def __init__(self, app: Any) -> None:
        from sqlalchemy import event

        from identity import database
        from identity.extensions import db

        self.statements = self.trips = 0
        with app.app_context():
            engine = db.engine
        options = database.engine_options(app.extensions["identity"].settings)
        pre_ping = options.get("pool_pre_ping", False)

        def statement(*_args: Any) -> None:
            self.statements += 1
            self.trips += 1

        def control(*_args: Any) -> None:
            self.trips += 1

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "begin", control)
        event.listen(engine, "commit", control)
        if pre_ping:
            event.listen(engine.pool, "checkout", control)
        # Introspection's fallback read runs on a raw autocommit connection, outside the
        # engine's events: one statement, one round trip.
        real_read_rows = database.read_rows

        def read_rows(*args: Any, **kwargs: Any) -> Any:
            statement()
            return real_read_rows(*args, **kwargs)

        database.read_rows = read_rows  # type: ignore[assignment]
        import identity.oauth.tokens as tokens_module

        tokens_module.read_rows = read_rows  # type: ignore[assignment]

    def reset(self) -> tuple[int, int]:
        counts = (self.statements, self.trips)
        self.statements = self.trips = 0
        return counts


def profile(args: argparse.Namespace, setup: bench.Setup) -> None:  # noqa: PLR0912, PLR0915 - one per option
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hello import app as hello_app

    from identity import create_app
    from identity.settings import load_settings

    os.environ.update(setup.env)
    app = create_app(load_settings())
    listen(app)
    trips = RoundTrips(app)
    # Request log lines are formatted as in production, then dropped.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    loads = bench.loads(setup)
    refresh_tokens = iter(setup.refresh_file.read_text().split())
    for name in args.endpoints:
        if name == HELLO:
            target, load = hello_app, bench.Load("/")
        else:
            target, load = app, loads[name][0]
        if name == "refresh":

            def make_refresh(load: bench.Load = load) -> dict[str, Any]:
                body = f"grant_type=refresh_token&refresh_token={next(refresh_tokens)}"
                return environ_factory(
                    bench.Load(load.path, "POST", load.auth, body), setup.issuer
                )()

            make = make_refresh
        else:
            make = environ_factory(load, setup.issuer)
        for _ in range(50 if name != "refresh" else 20):  # warm caches and code paths
            status = call(target, make)
            if not status.startswith("200"):
                raise SystemExit(f"{name}: {status}")
        profiler: Any = None
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
        elif args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        # Batches of 100 requests: on a busy machine the quickest batches are the ones
        # least disturbed by other processes, so report the fastest and the median.
        batches: list[tuple[float, float]] = []
        trips.reset()
        for start in range(0, args.n, 100):
            size = min(100, args.n - start)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(size):
                status = call(target, make)
            batches.append(
                ((time.process_time() - cpu) / size, (time.perf_counter() - wall) / size)
            )
        if not status.startswith("200"):
            raise SystemExit(f"{name}: {status}")
        best = min(batches)
        median = sorted(batches)[len(batches) // 2]
        statements, round_trips = trips.reset()
        print(
            f"{name:14} {best[0] * 1e6:7.0f} us CPU/request (median {median[0] * 1e6:5.0f}), "
            f"wall {best[1] * 1e6:6.0f} us  (one core: {1 / best[0]:,.0f} req/s); "
            f"{statements / args.n:.2f} SQL statements, {round_trips / args.n:.2f} round trips"
        )
        if args.pyinstrument:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=args.all_frames))
        elif args.cprofile:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
