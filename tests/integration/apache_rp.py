"""Apache httpd with mod_auth_openidc as a relying party, for test_rp_mod_auth_openidc.py.

``ApacheRP.start`` fills in apache/httpd.conf.template in a fresh folder of its own (with
two tiny CGI scripts, the mod_auth_openidc cache and the logs), runs
``apache2 -f httpd.conf -DFOREGROUND`` on a free loopback port and waits until it answers.
Started as root (CI), Apache's children drop to www-data (or nobody): the folder is
outside pytest's private temporary directory so they can reach the CGI scripts, and the
cache is theirs. ``stop`` sends SIGTERM and waits; ``remove`` deletes the folder.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

import requests

APACHE = "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
MOD_AUTH_OPENIDC = f"{MODULES}/mod_auth_openidc.so"
TEMPLATE = Path(__file__).parent / "apache" / "httpd.conf.template"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

# The protected "application": every variable mod_auth_openidc hands it, one per line.
CLAIMS_CGI = """#!/bin/sh
printf 'Content-Type: text/plain; charset=utf-8\\n\\n'
env | grep -E '^(OIDC_|REMOTE_USER=|AUTH_TYPE=)' | sort
"""
# The post-logout redirect URI: a public page that echoes its query string.
SIGNED_OUT_CGI = """#!/bin/sh
printf 'Content-Type: text/plain; charset=utf-8\\n\\n'
printf 'signed out\\nquery=%s\\n' "$QUERY_STRING"
"""

# Error log lines at these levels fail the test (the default LogLevel is warn, so warn
# lines, such as "the OIDCRedirectURI is not https", are allowed).
BAD_LEVEL = re.compile(r"\[[\w_]+:(error|crit|alert|emerg)\]")


def _run_as() -> tuple[str, str]:
    """The account Apache's children run as: only root can switch, and must."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    for name in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    raise RuntimeError("no unprivileged account (www-data or nobody) for Apache's children")


def available() -> bool:
    return os.path.exists(APACHE) and os.path.exists(MOD_AUTH_OPENIDC)


@dataclass
class ApacheRP:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return self.url + "/protected/redirect_uri"

    @property
    def signed_out_uri(self) -> str:
        return self.url + "/signed-out"

    @staticmethod
    def prepare() -> Path:
        """A folder for an Apache: CGI scripts, cache, runtime dir."""
        root = Path(tempfile.mkdtemp(prefix="identity-apache-"))
        root.chmod(0o755)  # mkdtemp's 0700 would keep the children out
        for sub in ("htdocs", "cgi-bin", "run", "cache"):
            (root / sub).mkdir(mode=0o755)
        for name, text in (("claims.cgi", CLAIMS_CGI), ("signed-out.cgi", SIGNED_OUT_CGI)):
            script = root / "cgi-bin" / name
            script.write_text(text)
            script.chmod(0o755)
        if os.geteuid() == 0:
            user, group = _run_as()
            # mod_auth_openidc's file cache (sessions, JWKS, metadata) is written by children.
            shutil.chown(root / "cache", user, group)
        return root

    @classmethod
    def start(cls, port: int, issuer: str, client_id: str, client_secret: str) -> ApacheRP:
        """Start Apache on ``port`` as a relying party of ``issuer``; ready to serve. The
        caller must ``stop`` and ``remove`` it."""
        user, group = _run_as()
        template = Template(TEMPLATE.read_text())
        root = cls.prepare()
        try:
            config = template.substitute(
                root=root,
                port=port,
                modules=MODULES,
                user=user,
                group=group,
                issuer=issuer,
                client_id=client_id,
                client_secret=client_secret,
                passphrase=secrets.token_urlsafe(32),
            )
            conf = root / "httpd.conf"
            conf.write_text(config)
            conf.chmod(0o600)  # it holds the client secret and the passphrase
            with (root / "stderr.log").open("wb") as stderr:
                process = subprocess.Popen(
                    [APACHE, "-f", str(conf), "-DFOREGROUND"],
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        apache = cls(root, port, process)
        try:
            apache.wait_ready()
        except BaseException:
            with contextlib.suppress(AssertionError):  # the reason it did not start first
                apache.stop()
            apache.remove()
            raise
        return apache

    def log(self, name: str = "error.log") -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}:\n{self.log(name)}" for name in ("stderr.log", "error.log", "access.log")
        )

    def bad_log_lines(self) -> list[str]:
        """Error-level lines (any module) and anything on stderr."""
        lines = [line for line in self.log().splitlines() if BAD_LEVEL.search(line)]
        return lines + self.log("stderr.log").splitlines()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"apache2 exited {code} while starting:\n{self.logs()}")
            try:
                if requests.get(self.signed_out_uri, timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"apache2 not ready after {START_TIMEOUT} s:\n{self.logs()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM (Apache stops its children, then exits); SIGKILL the process group if
        it hangs or leaves a process behind, which fails."""
        pgid = self.process.pid  # start_new_session: apache2 leads its own group
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"apache2 ignored SIGTERM for {STOP_TIMEOUT} s:\n{self.logs()}"
            ) from None
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return code
        os.killpg(pgid, signal.SIGKILL)
        raise AssertionError(f"processes of apache2 outlived it:\n{self.logs()}")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
