"""docs/security-report.md names real tests and real requirement IDs: each
`tests/...py::test_name` it cites is a test defined in that file, and each ID (TOK-01) is
one that docs/security-requirements.md lists, in a table or under "Not covered yet".
Only files are read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "security-report.md"
REQUIREMENTS = ROOT / "docs" / "security-requirements.md"
PREFIX = "AUTHZ|AUTH|BCP|CRYPTO|GDPR|INPUT|LOG|OIDC|REL|SESS|TOK|WEB"
CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
CITED_ID = re.compile(rf"\b(?:{PREFIX})-\d+\b")


def test_every_test_the_report_names_exists():
    cited = CITED_TEST.findall(REPORT.read_text())
    assert len(cited) > 50  # the threat tables name their tests
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not (ROOT / path).is_file()
        or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert missing == [], "docs/security-report.md names tests that do not exist"


def test_every_requirement_id_the_report_names_is_listed():
    listed = set(re.findall(rf"^\| ((?:{PREFIX})-\d+) \|", REQUIREMENTS.read_text(), re.M))
    listed |= set(re.findall(rf"^- ((?:{PREFIX})-\d+):", REQUIREMENTS.read_text(), re.M))
    unknown = sorted(set(CITED_ID.findall(REPORT.read_text())) - listed)
    assert unknown == [], "docs/security-report.md names IDs security-requirements.md lacks"
