"""Resident memory of each server worker under a long load, for ``bench/run.py``.

The server process (``identity serve``) starts its workers as child processes; their
resident set size (VmRSS in /proc/<pid>/status, Linux only) is read right after start, then
between segments of wrk running a round-robin mix of client credentials, introspection and
UserInfo (bench/mix.lua) until ``--rss-requests`` requests have been answered. The table
shows each worker after start, halfway and at the end, and how much it grew in the last
half: a leak shows as growth that does not level off.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import Load, Server, fail, wrk

SEGMENT = 30  # longest wrk run between two readings, in seconds
READINGS = 20  # readings wanted over the run, at least (shorter segments when it is short)
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat), in order of process id."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name in parentheses may hold spaces: the fields after its end.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return sorted(found)


def workers(pid: int) -> list[int]:
    """The server's worker processes: its descendants but multiprocessing's helpers."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if not any(helper in command for helper in HELPERS):
                found.append(child)
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Memory:
    requests: int = 0
    seconds: float = 0.0
    # (requests answered so far, {worker pid: RSS in MB}) at each reading
    readings: list[tuple[int, dict[int, float]]] = field(default_factory=list)
    non_2xx: int = 0
    socket_errors: int = 0

    def table(self) -> str:
        if not self.readings:
            return ""
        start = self.readings[0][1]
        half_at, half = self._at(self.requests // 2)
        lines = [
            f"| Worker | After start (MB) | After {half_at:,} requests (MB) "
            f"| After {self.requests:,} requests (MB) | Growth in the last half (MB) "
            "| Largest reading (MB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        end = self.readings[-1][1]
        for n, pid in enumerate(sorted(start), 1):
            peak = max(reading[1].get(pid, 0.0) for reading in self.readings)
            lines.append(
                f"| {n} (pid {pid}) | {start[pid]:.1f} | {half.get(pid, 0.0):.1f} "
                f"| {end.get(pid, 0.0):.1f} | {end.get(pid, 0.0) - half.get(pid, 0.0):+.1f} "
                f"| {peak:.1f} |"
            )
        return "\n".join(lines)

    def _at(self, requests: int) -> tuple[int, dict[int, float]]:
        """The first reading taken after ``requests`` requests."""
        for count, values in self.readings:
            if count >= requests:
                return count, values
        return self.readings[-1]


def measure(
    args: argparse.Namespace,
    files: Path,
    mix: Callable[[], list[tuple[str, str, str, str]]],
    serve: Callable[[], contextlib.AbstractContextManager[Server]],
) -> Memory:
    """``mix()`` gives the requests (method, path, Authorization, body) with fresh tokens;
    it is called again every few minutes, before the access tokens it holds expire."""
    memory = Memory()
    started = time.monotonic()
    with serve() as server:
        pids = workers(server.process.pid)
        if not pids:
            fail("found no worker processes of the server in /proc")
        memory.readings.append((0, {pid: rss_mb(pid) for pid in pids}))
        minted = 0.0
        rate = 1000.0  # requests/s, until the first segment measures it
        path = files / "mix.txt"
        while memory.requests < args.rss_requests:
            if time.monotonic() - minted > 240:  # noqa: PLR2004 - tokens live 600 s
                path.write_text("".join("\t".join(request) + "\n" for request in mix()))
                minted = time.monotonic()
            left = min(args.rss_requests - memory.requests, args.rss_requests // READINGS)
            seconds = max(1, min(SEGMENT, round(left / rate)))
            result = wrk(
                args,
                server.url,
                Load("/", script="mix.lua", script_args=[str(path)]),
                seconds,
                "rss",
            )
            memory.requests += result.requests
            memory.non_2xx += result.non_2xx
            memory.socket_errors += result.socket_errors
            rate = max(result.rps, 1.0)
            memory.readings.append((memory.requests, {pid: rss_mb(pid) for pid in pids}))
            sizes = " / ".join(f"{value:.1f}" for value in memory.readings[-1][1].values())
            print(
                f"bench: memory {memory.requests:,} requests ({seconds} s at {result.rps:,.0f}"
                f" req/s), workers {sizes} MB",
                file=sys.stderr,
            )
            if workers(server.process.pid) != pids:
                fail("a server worker was replaced during the memory run (see its log)")
    memory.seconds = time.monotonic() - started
    return memory
