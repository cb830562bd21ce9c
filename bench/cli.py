#!/usr/bin/env python3
"""Time the ``identity`` command as an operator sees it: whole processes, start to exit.

Run it with the Python environment identity is installed in, from anywhere:

    python bench/cli.py                  # 7 runs of each command, SQLite, writes the doc
    python bench/cli.py --runs 15 --no-write
    python bench/cli.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It creates a scratch instance folder (and, with ``--database-url``, a scratch PostgreSQL
database next to the one named), runs ``identity init`` once, then runs ``identity --help``,
``identity clients list`` and ``identity check`` in turn, ``--runs`` times each after one
unmeasured run (which writes the bytecode caches, as the first run after an installation
does), and prints the minimum, median and maximum wall-clock time of each, and the median
CPU time (user and system) the process used, which other work on the machine changes
less than the wall-clock time. Bytecode
caching is left on even where ``PYTHONDONTWRITEBYTECODE`` is set, unless
``--no-bytecode-cache``: an installation has its caches. The table goes to standard output
and, unless ``--no-write``, into docs/performance.md between the ``bench:cli`` markers.
"""

# ruff: noqa: S603 - runs the local identity command
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "docs" / "performance.md"
MARKERS = "<!-- bench:cli:begin -->", "<!-- bench:cli:end -->"
IDENTITY = str(Path(sys.executable).parent / "identity")
COMMANDS = (("--help",), ("clients", "list"), ("check",))


def fail(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(2)


def environment(instance: Path, database_url: str, bytecode_cache: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["IDENTITY_INSTANCE_PATH"] = str(instance)
    if database_url:
        env["IDENTITY_DATABASE_URL"] = database_url
    return env


def run(args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one whole ``identity`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [IDENTITY, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        fail(f"identity {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def create_database(server_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"identity_bench_cli_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(server_url).set(drivername="postgresql+psycopg")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        name = make_url(url).database
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


Result = tuple[str, list[float], list[float]]  # command, wall-clock times, CPU times


def measure(args: argparse.Namespace, env: dict[str, str]) -> list[Result]:
    run(("init",), env)
    results = []
    for command in COMMANDS:
        run(command, env)  # unmeasured: writes the bytecode caches
        runs = [run(command, env) for _ in range(args.runs)]
        times, cpu = [wall for wall, _ in runs], [used for _, used in runs]
        name = "identity " + " ".join(command)
        print(
            f"bench: {name}: min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
            f"CPU {statistics.median(cpu):.2f} s",
            file=sys.stderr,
        )
        results.append((name, times, cpu))
    return results


def report(
    args: argparse.Namespace,
    results: list[Result],
    load_before: tuple[float, float, float],
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} with `python bench/cli.py"
        + (f" {' '.join(args.argv)}" if args.argv else "")
        + "`.",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; load "
        f"average before the run {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f}.",
        f"- Python {platform.python_version()}; "
        f"{'PostgreSQL' if args.database_url else 'SQLite'} database; bytecode caches "
        f"{'on' if not args.no_bytecode_cache else 'off'}; {args.runs} runs per command "
        "after one unmeasured run.",
        "",
        "| Command | Min (s) | Median (s) | Max (s) | CPU, median (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, times, cpu in results:
        lines.append(
            f"| `{name}` | {min(times):.2f} | {statistics.median(times):.2f} "
            f"| {max(times):.2f} | {statistics.median(cpu):.2f} |"
        )
    return "\n".join(lines)


def write_doc(path: Path, text: str) -> None:
    begin, end = MARKERS
    current = path.read_text()
    if begin not in current or end not in current:
        fail(f"{path} has no {begin} ... {end} block")
    head, rest = current.split(begin, 1)
    path.write_text(head + f"{begin}\n{text}\n{end}" + rest.split(end, 1)[1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="measured runs per command (7)")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server URL to create a scratch database on (default: SQLite)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run with PYTHONDONTWRITEBYTECODE=1 (every module compiled on every run)",
    )
    parser.add_argument("--output", type=Path, default=DOC, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not Path(IDENTITY).exists():
        fail(f"no identity command at {IDENTITY}: run with the environment it is installed in")
    load_before = os.getloadavg()
    files = Path(tempfile.mkdtemp(prefix="identity-bench-cli-"))
    database_url = create_database(args.database_url) if args.database_url else ""
    try:
        env = environment(files / "instance", database_url, not args.no_bytecode_cache)
        results = measure(args, env)
    finally:
        shutil.rmtree(files, ignore_errors=True)
        if database_url:
            drop_database(args.database_url, database_url)
    text = report(args, results, load_before)
    print(text)
    if not args.no_write:
        write_doc(args.output, text)
        print(f"bench: wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
