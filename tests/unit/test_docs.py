"""The documentation stays true to the code: the generated settings reference is current,
every setting and command the docs name exists, and every command is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from identity.settings import Settings, settings_reference

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# IDENTITY_* variables that are not settings: the config file path and the test switches.
NOT_SETTINGS = {"IDENTITY_CONFIG", "IDENTITY_TEST_DATABASE_URL", "IDENTITY_REQUIRE_ALL_TESTS"}
QUICK_START = [
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/identity init"
    " && .venv/bin/identity serve",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n 4",
]


def test_configuration_reference_is_current():
    """docs/configuration.md is exactly what `identity check --docs` writes today."""
    written = (DOCS / "configuration.md").read_text()
    assert written == settings_reference(), (
        "docs/configuration.md is stale: run `identity check --docs docs/configuration.md`"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_name_only_real_settings(page):
    """Every IDENTITY_* variable a page names is a setting (or the config file variable)."""
    names = set(re.findall(r"\bIDENTITY_[A-Z][A-Z0-9_]*[A-Z0-9]\b", page.read_text()))
    known = {f"IDENTITY_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    assert names - known == set()


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


def _cli() -> click.Group:
    from identity.cli import register_commands

    return register_commands()


def test_cli_reference_documents_every_command_and_option():
    """docs/cli.md names every command, subcommand and long option of `identity`."""
    text = (DOCS / "cli.md").read_text()
    missing = []
    for path, command in _commands(_cli(), "identity"):
        if path not in text:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option):
                longs = [o for o in param.opts if o.startswith("--")]
                if longs and not any(o in text for o in longs):
                    missing.append(f"{path} {longs[0]}")
    assert missing == []


def test_docs_mention_only_existing_commands():
    """Every `identity <command>` a page shows exists (no invented commands)."""
    groups = {path.split()[1]: cmd for path, cmd in _commands(_cli(), "identity")}
    for page in PAGES:
        for name in re.findall(r"`identity ([a-z][a-z-]*)", page.read_text()):
            assert name in groups, f"{page.name}: identity {name}"


def test_readme_has_the_two_command_quick_start():
    """The README's quick start is the two documented commands, each on its own line."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for command in QUICK_START:
        assert command in lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    """Links between pages and to repository files point at files that exist."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_breached_password_list_carries_its_notice():
    """The shipped password list sits next to the attribution its licences require."""
    data = ROOT / "identity" / "data"
    assert (data / "common-passwords.txt.gz").is_file()
    notice = (data / "NOTICE").read_text()
    assert "Django Software Foundation" in notice
    assert "Dan Wheeler and Dropbox, Inc." in notice


# Metrics (docs/operations.md, "Metrics"; docs/grafana-dashboard.json) -----------------

METRIC = re.compile(r"\bidentity_[a-z_]+[a-z]\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _metrics_section() -> str:
    text = (DOCS / "operations.md").read_text()
    return text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]


def _exposed() -> set[str]:
    """The metric names /metrics can show (without the counter and histogram suffixes)."""
    source = (ROOT / "identity" / "telemetry.py").read_text()
    source += (ROOT / "identity" / "metrics.py").read_text()
    return set(re.findall(r'"(identity_[a-z_]+)"', source))


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in _exposed():
            return name.removesuffix(suffix)
    return name


def test_every_metric_is_documented_and_the_docs_name_only_real_ones():
    section = _metrics_section()
    table = {_base(name) for name in re.findall(r"^\| `(identity_[a-z_]+)`", section, re.M)}
    assert table == _exposed()
    assert {_base(name) for name in METRIC.findall(section)} <= _exposed()


def test_alert_rules_load_and_cover_the_issue():
    yaml = pytest.importorskip("yaml")
    blocks = re.findall(r"```yaml\n(.*?)```", _metrics_section(), re.S)
    loaded = [yaml.safe_load(block) for block in blocks]
    [rules] = [doc for doc in loaded if "groups" in doc]
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"IdentityFailedSignInSpike", "IdentityQueueStuck", "IdentitySigningKeyOld"} <= set(
        alerts
    )
    for rule in alerts.values():
        assert {"expr", "labels", "annotations"} <= set(rule)
        assert {_base(name) for name in METRIC.findall(rule["expr"])} <= _exposed()
    [scrape] = [doc for doc in loaded if "scrape_configs" in doc]
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_grafana_dashboard_is_valid_and_reads_real_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {_base(name) for expr in exprs for name in METRIC.findall(expr)}
    assert used <= _exposed()
    for needed in (
        "identity_http_requests",
        "identity_http_request_duration_seconds",
        "identity_sign_ins",
        "identity_queue_oldest_age_seconds",
        "identity_signing_key_age_seconds",
    ):
        assert needed in used, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
