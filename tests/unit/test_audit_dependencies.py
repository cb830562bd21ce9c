"""tools/audit_dependencies.py, the pip-audit step of .ci/run: it fails on an untriaged
vulnerability and on any package nobody could check, never passes on an audit that did
not happen, and the repository's triage file is well formed. No network: pip-audit's
report and PyPI's documents are given to it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "audit_dependencies", ROOT / "tools" / "audit_dependencies.py"
)
assert _spec is not None and _spec.loader is not None
tool = importlib.util.module_from_spec(_spec)
sys.modules["audit_dependencies"] = tool  # dataclasses look their module up by name
_spec.loader.exec_module(tool)

INSTALLED = {"flask": "3.1.3", "jinja2": "3.1.6", "oldlib": "1.0"}
SKIPPED = "Dependency not found on PyPI and could not be audited"


def skipped(*names):
    return {"dependencies": [{"name": n, "skip_reason": SKIPPED} for n in names], "fixes": []}


def document(version, vulns=()):
    return {"info": {"version": version}, "vulnerabilities": list(vulns)}


def vuln(vid, aliases=(), withdrawn=None):
    return {
        "id": vid,
        "aliases": list(aliases),
        "fixed_in": ["9.9"],
        "summary": "bad\nthing",
        "withdrawn": withdrawn,
    }


def run(report, documents, triage_text="", local=frozenset(), server=None):
    triage = tool.Triage.parse(triage_text)
    result = tool.audit(
        report,
        INSTALLED.__getitem__,
        documents.__getitem__,
        triage,
        local=local,
        server=server,
    )
    return result, triage


def test_an_audit_that_could_check_nothing_fails():
    """pip-audit's skips (its exit 0 on "no known vulnerabilities") are not a pass: a
    package older than its latest release cannot be checked, and the run fails."""
    result, _ = run(
        skipped("flask", "oldlib"), {"flask": document("3.1.3"), "oldlib": document("2.0")}
    )
    assert result.failed
    assert result.unaudited == ["oldlib==1.0 (the latest release is 2.0)"]
    assert result.by_project_document == 1 and result.findings == []


def test_only_the_servers_packages_fail_the_audit_when_unchecked():
    """Test tools pinned below a new release are listed, not failed on: the gate is for
    what the server installs."""
    report = skipped("flask", "oldlib")
    documents = {"flask": document("3.1.4"), "oldlib": document("2.0")}
    result, _ = run(report, documents, server=frozenset({"flask"}))
    assert result.failed
    assert result.unaudited == ["flask==3.1.3 (the latest release is 3.1.4)"]
    assert result.unaudited_extras == ["oldlib==1.0 (the latest release is 2.0)"]
    result, _ = run(report, {**documents, "flask": document("3.1.3")}, server=frozenset({"flask"}))
    assert not result.failed and result.unaudited_extras


def test_the_servers_packages_are_its_requirements_with_their_extras():
    server = tool.server_packages()
    assert {"identity", "flask", "werkzeug", "authlib", "psycopg", "psycopg-binary"} <= server
    assert not {"pytest", "ruff", "pip-audit", "bandit", "pip"} & server


def test_an_environment_without_the_project_cannot_be_audited():
    with pytest.raises(tool.AuditError, match="not installed"):
        tool.server_packages("no-such-project")


def test_a_skipped_package_at_its_latest_release_is_checked_in_the_project_document():
    documents = {
        "flask": document("3.1.3", [vuln("PYSEC-1", ["CVE-1"]), vuln("GHSA-w", withdrawn="2026")]),
        "jinja2": document("3.1.6"),
    }
    result, _ = run(skipped("flask", "jinja2"), documents)
    assert result.failed
    assert [(f.name, f.version, f.ids) for f in result.findings] == [
        ("flask", "3.1.3", ["PYSEC-1", "CVE-1"])  # the withdrawn one is no finding
    ]
    assert result.findings[0].summary == "bad thing"


def test_pip_audits_own_findings_fail_unless_triaged_by_id_or_alias():
    report = {
        "dependencies": [
            {
                "name": "flask",
                "version": "3.1.3",
                "vulns": [{"id": "PYSEC-2", "aliases": ["CVE-2"]}],
            },
            {"name": "jinja2", "version": "3.1.6", "vulns": []},
        ]
    }
    result, _ = run(report, {})
    assert result.failed and result.by_pip_audit == 2
    result, triage = run(report, {}, "CVE-2 - not reachable: we never call the affected API\n")
    assert not result.failed
    assert [f.ids for f in result.triaged] == [["PYSEC-2", "CVE-2"]]
    assert triage.stale() == []


def test_accepted_unaudited_versions_pass_and_unused_entries_are_reported():
    text = (
        "# a comment\n\n"
        "unaudited OldLib==1.0 - newest release for Python 3.11, reads no input\n"
        "unaudited oldlib==0.9 - an entry for a version no longer installed\n"
        "PYSEC-404 - an entry for a vulnerability no longer reported\n"
    )
    result, triage = run(skipped("oldlib"), {"oldlib": document("2.0")}, text)
    assert not result.failed
    assert result.accepted_unaudited == ["oldlib==1.0"]
    assert sorted(triage.stale()) == ["PYSEC-404", "unaudited oldlib==0.9"]


def test_packages_installed_from_the_checkout_are_not_looked_up():
    result, _ = run(
        skipped("identity", "jinja2"), {"jinja2": document("3.1.6")}, local={"identity"}
    )
    assert not result.failed
    assert result.local == ["identity"] and result.by_project_document == 1


@pytest.mark.parametrize(
    "line",
    [
        "PYSEC-1",  # no reason
        "PYSEC-1 - ok",  # no real reason
        "PYSEC-1 CVE-2 - two ids on one line are not one entry",
        "unaudited oldlib - the version is missing from this entry",
    ],
)
def test_triage_entries_need_one_key_and_a_reason(line):
    with pytest.raises(tool.AuditError, match="line 1"):
        tool.Triage.parse(line + "\n")


def test_the_repositorys_triage_file_is_well_formed():
    triage = tool.Triage.parse(tool.IGNORE_FILE.read_text())
    assert all(len(reason) >= tool.MIN_REASON for reason in triage.vulns.values())
    assert all(len(reason) >= tool.MIN_REASON for reason in triage.unaudited.values())


def test_pypi_out_of_reach_fails_the_audit(monkeypatch):
    def unreachable(*args, **kwargs):
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(tool.requests, "get", unreachable)
    with pytest.raises(
        tool.AuditError, match=re.escape("cannot read https://pypi.org/pypi/flask/json")
    ):
        tool.pypi_project("Flask")


def test_a_project_document_without_a_vulnerabilities_list_fails_the_audit():
    with pytest.raises(tool.AuditError, match="no vulnerabilities field"):
        run(skipped("flask"), {"flask": {"info": {"version": "3.1.3"}}})


@pytest.mark.parametrize(
    ("code", "stdout"),
    [(1, ""), (2, "usage"), (0, "[]")],  # pip-audit's error exit; a bad option; not a report
)
def test_pip_audit_failing_to_report_fails_the_audit(monkeypatch, code, stdout):
    def fake(command, **kwargs):
        return subprocess.CompletedProcess(command, code, stdout, "ConnectionError: PyPI\n")

    monkeypatch.setattr(tool.subprocess, "run", fake)
    with pytest.raises(tool.AuditError, match=f"pip-audit did not audit \\(exit {code}\\)"):
        tool.run_pip_audit()


def test_main_exits_2_and_says_nothing_was_proven(monkeypatch, capsys, tmp_path):
    def broken():
        raise tool.AuditError("pip-audit did not audit (exit 1)")

    monkeypatch.setattr(tool, "run_pip_audit", broken)
    ignore = tmp_path / "ignore.txt"
    ignore.write_text("")
    assert tool.main(["--ignore-file", str(ignore)]) == 2
    assert "nothing was proven" in capsys.readouterr().err
