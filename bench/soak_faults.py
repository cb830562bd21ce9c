"""The soak's own services and the faults it injects (bench/soak.py).

A PostgreSQL cluster and a Redis server of the soak's own, on free ports in a temporary
folder, so that stopping them hurts nothing else on the machine; and the granian workers
of an ``identity serve`` process, found through /proc, to kill and to measure.
"""

# ruff: noqa: S603 - starts local tools (initdb, pg_ctl, redis-server) by name
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PG_BIN_DIRS = ("/usr/local/bin", *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin"))))


class SoakError(Exception):
    """A service the soak needs could not be set up; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_tool(name: str) -> str:
    for folder in PG_BIN_DIRS:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        raise SoakError(
            f"{name} not found (PostgreSQL server binaries; apt-get install postgresql)"
        )
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PostgresCluster:
    """A throw-away cluster (trust authentication on loopback) that can be stopped and
    started again. initdb refuses to run as root, so as root it runs as ``postgres`` (or
    ``nobody``), which then owns the folder."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.user = pwd.getpwnam(name)
                    break
            if self.user is None:
                raise SoakError("running as root and no unprivileged user to run initdb as")
            os.chmod(root, 0o755)  # noqa: S103 - the cluster's user must reach its folder
            self.dir.mkdir(mode=0o700)
            self.log.touch()
            for path in (self.dir, self.log):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *command: str) -> None:
        user = self.user
        env = {**os.environ, "LC_ALL": "C"}

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setgroups([])
                os.setuid(user.pw_uid)

        result = subprocess.run(
            command,
            env=env,
            preexec_fn=demote,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            raise SoakError(f"{' '.join(command[:2])} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> None:
        self._run(
            pg_tool("initdb"),
            "-D",
            str(self.dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=on"
        )
        self._run(
            pg_tool("pg_ctl"),
            "-D",
            str(self.dir),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(pg_tool("pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        with contextlib.suppress(SoakError):
            self.stop("immediate")


class RedisServer:
    """redis-server without persistence, stopped with SIGTERM and started on the same port."""

    def __init__(self, root: Path) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise SoakError("redis-server not found (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    self.binary or "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SoakError(f"redis-server did not start; log in {self.log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    close = stop


# Server processes ------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (granian's workers of a serve master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
