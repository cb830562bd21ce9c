"""Regenerate the admin console screenshots in docs/images/ (docs/admin-console.md).

    .venv/bin/python tools/screenshots.py [--out docs/images]

Builds a throw-away instance (SQLite, in a temporary folder) with a few users, a client,
roles and some sign-ins, serves it on a free loopback port, and photographs each console
page in headless Chromium (/usr/bin/chromium) at 1280 px, plus the dashboard at 360 px.
Run it after changing a console page, and commit the pictures that changed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from http import HTTPStatus
from pathlib import Path
from urllib.request import urlopen

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = str(Path(sys.executable).parent / "identity")
PASSWORD = "correct horse battery staple 42"  # noqa: S105 (a throw-away instance)
ADMIN = "ada@example.org"
PEOPLE = [
    ("grace@example.org", "Grace Hopper", ["user-manager"]),
    ("alan@example.org", "Alan Turing", ["auditor"]),
    ("edsger@example.org", "Edsger Dijkstra", []),
    ("barbara@example.org", "Barbara Liskov", []),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    def __init__(self, folder: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
            "IDENTITY_INSTANCE_PATH": str(folder),
            "IDENTITY_ISSUER": self.url,
            # The pictures show the pages, not the second-factor step before them.
            "IDENTITY_ADMIN_MFA_REQUIRED": "false",
            "IDENTITY_RATELIMIT_SIGN_IN": "1000/minute",
        }

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(  # noqa: S603 (our own command)
            [IDENTITY, *args],
            env=self.env,
            input=stdin,
            text=True,
            capture_output=True,
            check=True,
        )
        return done.stdout

    def seed(self) -> None:
        self.cli("init")
        self.cli(
            "users",
            "create",
            ADMIN,
            "--password-stdin",
            "--verified",
            "--role",
            "admin",
            "--name",
            "Ada Lovelace",
            stdin=PASSWORD + "\n",
        )
        for email, name, roles in PEOPLE:
            extra = [arg for role in roles for arg in ("--role", role)]
            self.cli(
                "users",
                "create",
                email,
                "--password-stdin",
                "--verified",
                "--name",
                name,
                *extra,
                stdin=PASSWORD + "\n",
            )
        self.cli(
            "clients",
            "create",
            "--name",
            "Wiki",
            "--redirect-uri",
            "https://wiki.example.org/callback",
        )
        self.cli(
            "roles",
            "create",
            "editor",
            "--permission",
            "users:read",
            "--description",
            "Edits the wiki.",
        )
        self.cli(
            "roles",
            "create",
            "chief-editor",
            "--parent",
            "editor",
            "--description",
            "Edits and publishes.",
        )


def sign_ins(page: Page, url: str) -> None:
    """A few successful and failed sign-ins, so that the dashboard has something to draw."""
    for email, password in [(e, PASSWORD) for e, _, _ in PEOPLE] + [
        ("edsger@example.org", "wrong"),
        ("nobody@example.org", "wrong"),
        ("barbara@example.org", "wrong"),
    ]:
        context = page.context.browser.new_context(base_url=url)  # type: ignore[union-attr]
        other = context.new_page()
        other.goto("/sign-in")
        other.get_by_label("Email").fill(email)
        other.get_by_label("Password", exact=True).fill(password)
        other.get_by_role("button", name="Sign in", exact=True).click()
        context.close()


def shoot(page: Page, path: str, out: Path, name: str) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / f"console-{name}.png"), full_page=False)
    print(f"  {name}: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        instance = Instance(Path(folder), port)
        instance.seed()
        server = subprocess.Popen(  # noqa: S603 (our own command)
            [IDENTITY, "serve", "--port", str(port), "--workers", "1"],
            env=instance.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(300):
                try:
                    if urlopen(instance.url + "/readyz", timeout=2).status == HTTPStatus.OK:  # noqa: S310
                        break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
                context = browser.new_context(
                    base_url=instance.url, viewport={"width": 1280, "height": 860}
                )
                page = context.new_page()
                sign_ins(page, instance.url)
                page.goto("/admin/")
                page.get_by_label("Email").fill(ADMIN)
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                page.get_by_role("button", name="Sign in", exact=True).click()
                page.wait_for_url("**/admin/")
                for name, path in PAGES:
                    shoot(page, path, args.out, name)
                for name, path, link in DETAILS:
                    page.goto(path)
                    page.get_by_role("link", name=link, exact=True).first.click()
                    shoot(page, page.url, args.out, name)
                page.set_viewport_size({"width": 360, "height": 740})
                shoot(page, "/admin/", args.out, "dashboard-phone")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=40)


# (file name, path): the pages docs/admin-console.md shows.
PAGES = [
    ("dashboard", "/admin/"),
    ("users", "/admin/users"),
    ("clients", "/admin/clients"),
    ("roles", "/admin/roles"),
    ("explorer", "/admin/explorer?subject=grace%40example.org&permission=users%3Awrite"),
    ("sessions", "/admin/sessions"),
    ("audit", "/admin/audit"),
    ("keys", "/admin/keys"),
    ("settings", "/admin/settings"),
]

# (file name, list path, link): a detail page, reached by its link on a list.
DETAILS = [
    ("user", "/admin/users", "grace@example.org"),
    ("client", "/admin/clients", "Wiki"),
]

if __name__ == "__main__":
    main()
