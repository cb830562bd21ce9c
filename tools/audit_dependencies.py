"""Known vulnerabilities in the installed Python packages: pip-audit, failing closed.

    .venv/bin/python tools/audit_dependencies.py [--ignore-file .ci/pip-audit-ignore.txt]

Exits 1 on a vulnerability in any installed package that the ignore file does not triage,
and on a package of the server that could not be checked at all; exits 2 when the audit
could not be done. pip-audit alone cannot be trusted with the second: when PyPI answers
404 for a package's release document it skips the package, prints "No known
vulnerabilities found" and exits 0, even when it skipped every package.
That is what happens on this project's machines, whose PyPI serves each project's document
(``/pypi/NAME/json``) but not the per-release ones (``/pypi/NAME/VERSION/json``) that
pip-audit reads. So a package pip-audit skipped is looked up again in its project
document, whose ``vulnerabilities`` are those of the project's latest release: when that
is the installed version, the list answers for it. A package of the server (identity's
own requirements, without extras) still unchecked, an older release than the latest,
fails the run unless the ignore file accepts exactly that version as unaudited, with a
reason; one that only the extras install (test tools, pinned below a new release more
often than not) is listed as unaudited without failing the run. PyPI unreachable, or an
answer that is not what pip-audit or PyPI should say, fails the run.

The ignore file has one entry a line, ``KEY - reason``, ``#`` starting a comment line:
KEY is a vulnerability ID (PYSEC-, GHSA-, CVE-...; an alias matches too) or
``unaudited NAME==VERSION``. An entry without a reason is refused. Entries that no longer
match anything are reported, so that the file shrinks when packages are upgraded.

The editable checkout itself (``identity``) is not audited: it is not the PyPI project of
that name. docs/security-report.md records each run's results and every triaged entry.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "identity"
IGNORE_FILE = ROOT / ".ci" / "pip-audit-ignore.txt"
PROJECT_URL = "https://pypi.org/pypi/{name}/json"
TIMEOUT = 30  # seconds for each PyPI request
MIN_REASON = 10  # characters: "ok" or "n/a" is no reason


class AuditError(Exception):
    """The audit could not be done: the run must fail, saying why."""


@dataclass
class Triage:
    """The ignore file: vulnerability IDs, and package versions accepted as unaudited."""

    vulns: dict[str, str] = field(default_factory=dict)  # ID -> reason
    unaudited: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, version)
    used: set[str] = field(default_factory=set)  # the entries that matched something

    @classmethod
    def parse(cls, text: str) -> Triage:
        triage = cls()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, reason = line.partition(" - ")
            key, reason = key.strip(), reason.strip()
            if not sep or len(reason) < MIN_REASON:
                raise AuditError(f"line {number}: {key!r} needs a reason after ' - '")
            if key.startswith("unaudited "):
                name, eq, version = key.removeprefix("unaudited ").strip().partition("==")
                if not eq or not name.strip() or not version.strip():
                    raise AuditError(f"line {number}: write 'unaudited NAME==VERSION - reason'")
                triage.unaudited[(canonicalize_name(name), version.strip())] = reason
            elif " " in key:
                raise AuditError(f"line {number}: {key!r} is not one vulnerability ID")
            else:
                triage.vulns[key] = reason
        return triage

    def ignores(self, ids: Iterable[str]) -> bool:
        matched = [i for i in ids if i in self.vulns]
        self.used.update(matched)
        return bool(matched)

    def accepts(self, name: str, version: str) -> bool:
        key = (canonicalize_name(name), version)
        if key in self.unaudited:
            self.used.add(f"unaudited {key[0]}=={version}")
            return True
        return False

    def stale(self) -> list[str]:
        keys = [*self.vulns, *(f"unaudited {n}=={v}" for n, v in self.unaudited)]
        return [k for k in keys if k not in self.used]


@dataclass
class Finding:
    name: str
    version: str
    ids: list[str]  # the vulnerability's ID first, then its aliases
    fixed_in: list[str]
    summary: str


@dataclass
class Result:
    local: list[str] = field(default_factory=list)
    by_pip_audit: int = 0
    by_project_document: int = 0
    accepted_unaudited: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    unaudited_extras: list[str] = field(default_factory=list)  # not the server's: no failure
    findings: list[Finding] = field(default_factory=list)
    triaged: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.findings or self.unaudited)


def _not_withdrawn(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if not e.get("withdrawn")]


def audit(
    report: dict[str, Any],
    installed: Callable[[str], str],
    project: Callable[[str], dict[str, Any]],
    triage: Triage,
    *,
    local: frozenset[str] = frozenset(),
    server: frozenset[str] | None = None,
) -> Result:
    """Judge pip-audit's JSON report, looking skipped packages up in their project
    documents. ``installed`` gives a package's installed version, ``project`` its PyPI
    project document; ``local`` names the packages installed from a folder, which are
    not the PyPI projects of their names; ``server`` the packages the server itself
    installs (None: every package counts as the server's)."""
    result = Result()
    found: list[Finding] = []
    skipped: list[str] = []
    for dep in report.get("dependencies", []):
        if canonicalize_name(dep["name"]) in local:
            result.local.append(dep["name"])
        elif "skip_reason" in dep:
            skipped.append(dep["name"])
        else:
            result.by_pip_audit += 1
            found += [
                Finding(
                    dep["name"],
                    dep["version"],
                    [vuln["id"], *vuln.get("aliases", [])],
                    vuln.get("fix_versions", []),
                    vuln.get("description", ""),
                )
                for vuln in dep.get("vulns", [])
            ]
    documents = _fetch_all(project, skipped)
    for name in skipped:
        found += _from_project_document(
            name, installed(name), documents[name], triage=triage, result=result, server=server
        )
    for finding in found:
        (result.triaged if triage.ignores(finding.ids) else result.findings).append(finding)
    return result


def _from_project_document(
    name: str,
    version: str,
    document: dict[str, Any],
    *,
    triage: Triage,
    result: Result,
    server: frozenset[str] | None,
) -> list[Finding]:
    """The vulnerabilities of a package pip-audit skipped, if its project document
    answers for the installed version; otherwise the package is noted as unaudited."""
    try:
        latest = Version(document["info"]["version"])
        current = Version(version)
    except (KeyError, TypeError, InvalidVersion) as error:
        raise AuditError(f"{name}: PyPI's project document has no usable version") from error
    if latest != current:
        unchecked = f"{name}=={version} (the latest release is {latest})"
        if triage.accepts(name, version):
            result.accepted_unaudited.append(f"{name}=={version}")
        elif server is None or canonicalize_name(name) in server:
            result.unaudited.append(unchecked)
        else:
            result.unaudited_extras.append(unchecked)
        return []
    if not isinstance(document.get("vulnerabilities"), list):
        raise AuditError(f"{name}: PyPI's project document lists no vulnerabilities field")
    result.by_project_document += 1
    return [
        Finding(
            name,
            version,
            [vuln["id"], *(vuln.get("aliases") or [])],
            list(vuln.get("fixed_in") or []),
            (vuln.get("summary") or vuln.get("details") or "").replace("\n", " "),
        )
        for vuln in _not_withdrawn(document["vulnerabilities"])
    ]


def _fetch_all(
    project: Callable[[str], dict[str, Any]], names: list[str]
) -> dict[str, dict[str, Any]]:
    # Up to a hundred documents: a few at a time keeps the run to seconds.
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(names, pool.map(project, names), strict=True))


def local_projects() -> frozenset[str]:
    """Packages installed from a folder, such as the editable checkout: whatever PyPI says
    about their names is about other projects (PyPI has another ``identity``)."""
    local = set()
    for dist in metadata.distributions():
        origin = json.loads(dist.read_text("direct_url.json") or "{}")
        if "dir_info" in origin:
            local.add(canonicalize_name(dist.metadata["Name"]))
    return frozenset(local)


def server_packages(project: str = PROJECT) -> frozenset[str]:
    """The packages that installing ``project`` without extras brings: its requirements,
    theirs, and so on, with the extras they name (``psycopg[binary]``)."""
    if not any(canonicalize_name(d.metadata["Name"]) == project for d in metadata.distributions()):
        raise AuditError(f"{project} is not installed in this environment")
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(project, "")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker did not hold at install time
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                wanted = canonicalize_name(requirement.name)
                todo += [(wanted, "")] + [(wanted, e) for e in requirement.extras]
    return frozenset(name for name, _ in seen)


def pypi_project(name: str) -> dict[str, Any]:
    url = PROJECT_URL.format(name=canonicalize_name(name))
    try:
        response = requests.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        raise AuditError(f"{name}: cannot read {url}: {error}") from error
    if not isinstance(document, dict):
        raise AuditError(f"{name}: {url} is not a project document")
    return document


def run_pip_audit() -> dict[str, Any]:
    """pip-audit's JSON report on this interpreter's environment. Vulnerabilities are
    triaged here, not with --ignore-vuln, so that stale entries can be told apart."""
    command = [sys.executable, "-m", "pip_audit", "--format", "json"]
    command += ["--aliases", "on", "--desc", "on", "--progress-spinner", "off"]
    done = subprocess.run(  # noqa: S603 - a fixed command line
        command, capture_output=True, text=True, check=False
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    # Exit 1 with a report means vulnerabilities found; anything else is a failure to audit.
    if done.returncode not in (0, 1) or not isinstance(report, dict):
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise AuditError(f"pip-audit did not audit (exit {done.returncode}):\n{tail}")
    return report


def _print(result: Result, triage: Triage) -> None:
    total = len(result.local) + result.by_pip_audit + result.by_project_document
    total += len(result.accepted_unaudited) + len(result.unaudited)
    total += len(result.unaudited_extras)
    print(
        f"pip-audit {metadata.version('pip-audit')}: {total} packages;"
        f" {result.by_pip_audit} checked by pip-audit,"
        f" {result.by_project_document} in PyPI's project document (the latest release),"
        f" {len(result.accepted_unaudited)} accepted unaudited,"
        f" {len(result.unaudited_extras)} unaudited but only in the extras,"
        f" {len(result.local)} installed from this checkout ({', '.join(result.local)})"
    )
    for name in result.accepted_unaudited:
        print(f"  accepted unaudited: {name}")
    for name in result.unaudited_extras:
        print(f"  unaudited, not the server's: {name}")
    for finding in result.triaged:
        print(f"  triaged: {finding.name} {finding.version} {', '.join(finding.ids)}")
    for key in triage.stale():
        print(f"  no longer needed in {IGNORE_FILE.name}: {key}")
    for name in result.unaudited:
        print(f"UNAUDITED {name}: upgrade it, or accept it in {IGNORE_FILE.name} with a reason")
    for f in result.findings:
        fixed = ", ".join(f.fixed_in) or "no fixed release"
        print(f"VULNERABLE {f.name} {f.version}: {', '.join(f.ids)} (fixed in {fixed}) {f.summary}")
    if not result.failed:
        print("no untriaged vulnerability; every package of the server checked or accepted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    args = parser.parse_args(argv)
    try:
        triage = Triage.parse(args.ignore_file.read_text())
        report = run_pip_audit()
        result = audit(
            report,
            metadata.version,
            pypi_project,
            triage,
            local=local_projects(),
            server=server_packages(),
        )
    except (AuditError, OSError) as error:
        print(f"dependency audit FAILED, nothing was proven: {error}", file=sys.stderr)
        return 2
    _print(result, triage)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
