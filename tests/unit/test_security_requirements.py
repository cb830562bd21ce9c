"""docs/security-requirements.md lists exactly the requirement IDs the tests cite, each with
tests that exist and cite it; IDs under "Not covered yet" are exempt from needing a test.

A test cites an ID by its name (test_BCP_17_...) or in its docstring or a comment
("(BCP-17)"); a module docstring or a comment outside any function cites it for the tests of
that module whose names carry no ID of their own. Only files are read: no app, no database.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOC = ROOT / "docs" / "security-requirements.md"
DOC_NAME = "docs/security-requirements.md"
# The checklist's groups. Longer names first, so that AUTHZ is not read as AUTH.
PREFIX = "AUTHZ|AUTH|BCP|CRYPTO|GDPR|INPUT|LOG|OIDC|REL|SESS|TOK|WEB"
NAME_ID = re.compile(rf"^test_({PREFIX})_(\d+)_")
TEXT_ID = re.compile(rf"\b({PREFIX})-(\d+)\b")
ROW_ID = re.compile(rf"^({PREFIX})-\d+$")
GAP_LINE = re.compile(rf"^\s*[-*]\s+\**`?(({PREFIX})-\d+)\b")
NOT_COVERED = "not covered yet"
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _id(prefix: str, number: str) -> str:
    return f"{prefix}-{int(number):02d}"


@dataclass
class Citations:
    """Who cites what: "path::function" for a function, "path" for a whole module."""

    by_id: dict[str, set[str]] = field(default_factory=dict)
    functions: set[str] = field(default_factory=set)
    named: set[str] = field(default_factory=set)  # tests whose name carries an ID

    def add(self, requirement: str, where: str) -> None:
        self.by_id.setdefault(requirement, set()).add(where)

    def cites(self, requirement: str, test: str) -> bool:
        """A test cites an ID itself, or through its module if its name carries no ID."""
        where = self.by_id.get(requirement, set())
        module = test.split("::", maxsplit=1)[0]
        return test in where or (module in where and test not in self.named)


def _owner(module: str, spans: list[tuple[int, int, str]], line: int) -> str:
    """The top-level function or class holding a line, else the module itself."""
    for first, last, name in spans:
        if first <= line <= last:
            return f"{module}::{name}"
    return module


def _docstrings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of the docstrings of the module and of every class and function in it."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Module, *DEFINITIONS)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.body[0].lineno, doc
        for block in ("body", "orelse", "finalbody", "handlers"):
            stack.extend(getattr(node, block, None) or ())


def _may_have_cited_in_a_comment(source: str) -> bool:
    """Whether a "#" precedes an ID on its line: only then is tokenizing worth it."""
    for match in TEXT_ID.finditer(source):
        if "#" in source[source.rfind("\n", 0, match.start()) + 1 : match.start()]:
            return True
    return False


@cache
def citations() -> Citations:
    """Parse every Python file under tests/ (this one excepted) for cited IDs."""
    found = Citations()
    for path in sorted(TESTS.rglob("*.py")):
        if "node_modules" in path.parts or path == Path(__file__).resolve():
            continue
        module = path.relative_to(ROOT).as_posix()
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        spans: list[tuple[int, int, str]] = []
        for node in tree.body:
            if isinstance(node, DEFINITIONS):
                spans.append((node.lineno, node.end_lineno or node.lineno, node.name))
                found.functions.add(f"{module}::{node.name}")
                match = NAME_ID.match(node.name)
                if match and not isinstance(node, ast.ClassDef):
                    found.add(_id(*match.groups()), f"{module}::{node.name}")
                    found.named.add(f"{module}::{node.name}")

        if not TEXT_ID.search(source):
            continue
        texts = list(_docstrings(tree))
        if _may_have_cited_in_a_comment(source):
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                if token.type == tokenize.COMMENT:
                    texts.append((token.start[0], token.string))
        for line, text in texts:
            for match in TEXT_ID.finditer(text):
                found.add(_id(*match.groups()), _owner(module, spans, line))
    return found


@dataclass
class Document:
    """The IDs of the tables with the tests named for each, and the uncovered IDs."""

    rows: list[tuple[int, str, str, list[str]]] = field(default_factory=list)
    gaps: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def listed(self) -> set[str]:
        return {requirement for _, requirement, _, _ in self.rows}


def _tests_in(cell: str, line: int, errors: list[str]) -> list[str]:
    """`path.py`: `test_a`, `test_b` and `path.py::test_c`, parameters dropped."""
    tests, module = [], None
    for quoted in re.findall(r"`([^`]+)`", cell):
        token = re.sub(r"\[.*\]$", "", quoted.strip())
        if token.endswith(".py"):
            module = token
        elif "::" in token:
            module = token.split("::")[0]
            tests.append(token)
        elif module is None:
            errors.append(f"line {line}: `{token}` is not preceded by its module's path")
        else:
            tests.append(f"{module}::{token}")
    return tests


@cache
def document() -> Document:
    """Parse the tables and the "Not covered yet" section of the document."""
    parsed = Document()
    in_gaps = False
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("## "):
            in_gaps = line[3:].strip().lower().startswith(NOT_COVERED)
            continue
        if in_gaps:
            match = GAP_LINE.match(line)
            if match:
                parsed.gaps.append((number, match.group(1)))
            continue
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not ROW_ID.match(cells[0].strip("`* ")):
            continue
        if len(cells) != 3:
            parsed.errors.append(f"line {number}: a row needs 3 cells (ID, requirement, tests)")
            continue
        requirement, text, tests = cells[0].strip("`* "), cells[1], cells[2]
        parsed.rows.append((number, requirement, text, _tests_in(tests, number, parsed.errors)))
    return parsed


def test_document_is_well_formed():
    """Each ID appears once, its row has a requirement and tests, and no ID is also a gap."""
    doc = document()
    problems = list(doc.errors)
    seen: dict[str, int] = {}
    for number, requirement, text, tests in doc.rows:
        if requirement in seen:
            problems.append(
                f"line {number}: {requirement} already listed on line {seen[requirement]}"
            )
        seen[requirement] = number
        if not text:
            problems.append(f"line {number}: {requirement} says nothing it requires")
        if not tests:
            problems.append(f"line {number}: {requirement} names no test")
    for number, requirement in doc.gaps:
        if requirement in seen:
            problems.append(
                f"line {number}: {requirement} is under 'Not covered yet' and in a table"
                f" (line {seen[requirement]})"
            )
        seen.setdefault(requirement, number)
    assert doc.rows, f"{DOC_NAME} has no requirement table"
    assert problems == [], f"{DOC_NAME}:\n" + "\n".join(problems)


def test_every_cited_id_is_listed():
    """Every requirement ID a test cites has a row in the document's tables."""
    doc, cited = document(), citations()
    gaps = {requirement for _, requirement in doc.gaps}
    problems = []
    for requirement in sorted(set(cited.by_id) - doc.listed):
        where = ", ".join(sorted(cited.by_id[requirement])[:3])
        state = "is under 'Not covered yet'" if requirement in gaps else "is missing"
        problems.append(f"{requirement} {state} but tests cite it: {where}")
    assert problems == [], f"add a row to {DOC_NAME} for:\n" + "\n".join(problems)


def test_every_listed_id_has_a_test():
    """Every ID in the tables (not those under "Not covered yet") is cited by some test."""
    cited = citations()
    problems = [
        f"line {number}: {requirement}"
        for number, requirement, _, _ in document().rows
        if requirement not in cited.by_id
    ]
    assert problems == [], (
        f"no test cites these IDs of {DOC_NAME} (move them to 'Not covered yet'):\n"
        + "\n".join(problems)
    )


def test_listed_tests_exist():
    """Every test named in the tables is defined in the module named with it."""
    functions = citations().functions
    problems = [
        f"line {number}: {requirement}: {test}"
        for number, requirement, _, tests in document().rows
        for test in tests
        if test not in functions
    ]
    assert problems == [], f"{DOC_NAME} names tests that do not exist:\n" + "\n".join(problems)


def test_listed_tests_cite_their_id():
    """Every test named in a row cites that row's ID itself, or through its module."""
    cited = citations()
    problems = [
        f"line {number}: {test} does not cite {requirement}"
        for number, requirement, _, tests in document().rows
        for test in tests
        if test in cited.functions and not cited.cites(requirement, test)
    ]
    assert problems == [], f"{DOC_NAME} names tests for IDs they do not cite:\n" + "\n".join(
        problems
    )
