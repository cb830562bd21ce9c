"""What every benchmark of bench/ shares: servers started and stopped as processes, wrk runs
and their parsing, and a request checked by hand before a measurement."""

# ruff: noqa: S603, S310 - runs local tools (servers, wrk) and fetches loopback URLs
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def fail(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Servers ----------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            fail(f"server ignored SIGTERM; log in {self.log}")
        if code != 0:
            fail(f"server exited {code} after SIGTERM; log in {self.log}")


def start(command: list[str], env: dict[str, str], url: str, ready: str, log: Path) -> Server:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, url, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"server exited {process.returncode} while starting; log in {log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + ready, timeout=2) as ok:
            if ok.status == HTTPStatus.OK:
                return server
        time.sleep(0.1)
    server.stop()
    fail(f"server not ready after 60 s; log in {log}")
    raise AssertionError  # unreachable


# wrk ----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    rows_per_request: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Load:
    path: str
    method: str = "GET"
    auth: str = ""
    body: str = ""
    script: str = "get.lua"
    script_args: list[str] = field(default_factory=list)
    content_type: str = "application/x-www-form-urlencoded"
    env: dict[str, str] = field(default_factory=dict)  # more for the script (signin.lua)


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(args: argparse.Namespace, url: str, load: Load, duration: int, name: str) -> Result:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / load.script),
        url + load.path,
    ]
    if load.script_args:
        command += ["--", *load.script_args]
    env = {
        **os.environ,
        "BENCH_AUTH": load.auth,
        "BENCH_BODY": load.body,
        "BENCH_CONTENT_TYPE": load.content_type,
        **load.env,
    }
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        fail(f"wrk failed: {out.stderr}{out.stdout}")
    text = out.stdout
    result = Result(name)
    result.rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    result.requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    result.p50 = to_ms(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    result.p99 = to_ms(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        result.non_2xx = int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        result.socket_errors = sum(int(g) for g in match.groups())
    return result


def check(url: str, load: Load, expect: str) -> None:
    """One request by hand: the endpoint must answer 200 with ``expect`` in its JSON (a
    true ``active`` for introspection), or in its text for the hello world."""
    request = urllib.request.Request(
        url + load.path,
        data=load.body.encode() if load.method == "POST" else None,
        method=load.method,
    )
    if load.auth:
        request.add_header("Authorization", load.auth)
    if load.method == "POST":
        request.add_header("Content-Type", load.content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        fail(f"{load.path} answered {error.code}: {error.read().decode()[:300]}")
    try:
        data = json.loads(body)
    except ValueError:
        data = body
    ok = expect in data and (expect != "active" or data["active"] is True)
    if not ok:
        fail(f"{load.path} answered without {expect!r}: {body[:300]}")
