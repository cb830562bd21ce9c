"""docs/architecture.md stays a true map: every URL the app serves is listed beside the
module that holds its view, and every module the map names exists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def url_table() -> list[tuple[list[str], str]]:
    """The rows of "From a URL to its code": (the URLs listed, the module path)."""
    section = DOC.split("## From a URL to its code", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("`identity/"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1].strip("`")))
    return rows


def listed(url: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("…"):
            if url.startswith(pattern.removesuffix("…")):
                return True
        elif url == pattern:
            return True
    return False


def test_every_url_is_on_the_map_beside_its_module(app: Flask) -> None:
    """A newcomer finds an endpoint's code in one hop from its URL."""
    rows = url_table()
    assert rows
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = inspect.unwrap(app.view_functions[rule.endpoint])  # rate-limit decorators
        path = str(Path(inspect.getsourcefile(view) or "").resolve().relative_to(ROOT))
        url = rule.rule.split("<", 1)[0]
        if not any(listed(url, urls) for urls, where in rows if where == path):
            missing.append(f"{rule.rule} ({path})")
    assert missing == []


def test_every_module_the_map_names_exists() -> None:
    """Paths in the map point at real files."""
    named = set(re.findall(r"`(identity/[\w/]+\.py)`", DOC))
    assert named
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []
