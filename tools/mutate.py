"""Mutation testing: would the tests notice if a security check were broken?

For one module and a list of test files (or node ids), this applies one small change at a
time to the module (a "mutant"), runs the tests against it and counts the mutant as killed
when they fail. A surviving mutant is a change the tests do not notice: a missing test, or
an equivalent change that cannot be observed (docs/security-requirements.md, "Mutation
testing", explains every survivor).

    .venv/bin/python tools/mutate.py identity/links.py tests/unit/test_links.py
    .venv/bin/python tools/mutate.py identity/oauth/token/grants.py tests/oauth/test_bcp_pkce.py \
        --function S256CodeChallenge
    .venv/bin/python tools/mutate.py identity/oauth/tokens.py --function verify_jwt --list
    .venv/bin/python tools/mutate.py identity/sealing.py tests/unit/test_sealing.py --only 3 7

Mutations: comparison operators flipped (``<`` to ``>=``) and moved across the boundary
(``<`` to ``<=``); ``and``/``or`` swapped and each of their operands dropped; ``not``
removed, and added to if/while/ternary/comprehension conditions; numbers +1 and -1 (which
covers 0 to 1 and 1 to 0); ``+``/``-`` swapped; ``True``/``False`` swapped; ``.lower()``,
``.upper()``, ``.casefold()`` and ``.strip()`` (and its variants) removed; a return, raise,
assignment or call statement replaced by ``pass``.

The repository's files are never written. The script copies the checkout (without .git,
.venv and node_modules) to a temporary directory, mutates the module there and runs
``python -m pytest -x -q -p no:cacheprovider --no-cov TESTS`` (no xdist) from that directory, with
the copy first on PYTHONPATH; a probe plugin makes every run fail loudly if ``identity`` is
imported from anywhere but the copy. The copy's module is restored after each mutant and
checked against its hash; the whole copy is deleted at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "*_cache", "instance")
PROBE_EXIT = 97
PROBE = f'''"""Loaded by tools/mutate.py: fail unless identity comes from the mutated copy."""
import os, sys
import pytest

def pytest_collection_finish(session):
    copy = os.path.realpath(os.environ["MUTATE_COPY"])
    for name, module in list(sys.modules.items()):
        if name == "identity" or name.startswith("identity."):
            # A namespace package (identity/oauth has no __init__.py) has a __path__ only.
            places = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", []))
            for where in filter(None, places):
                if not os.path.realpath(where).startswith(copy + os.sep):
                    pytest.exit(f"{{name}} imported from {{where}}", returncode={PROBE_EXIT})
'''
FLIPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.GtE, ast.LtE),
    ast.LtE: (ast.Gt, ast.Lt),
    ast.Gt: (ast.LtE, ast.GtE),
    ast.GtE: (ast.Lt, ast.Gt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
          ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
          ast.And: "and", ast.Or: "or", ast.Add: "+", ast.Sub: "-"}  # fmt: skip
NORMALIZERS = {"lower", "upper", "casefold", "strip", "lstrip", "rstrip"}
STATEMENTS = (ast.Return, ast.Raise, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr)


@dataclass
class Mutant:
    number: int
    line: int
    description: str
    source: str


SHORT = 60  # characters of source shown for a mutated expression


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def _expression_mutants(node: ast.AST) -> list[tuple[ast.AST | str, str]]:
    """(replacement node or text, description) for one expression node."""
    found: list[tuple[ast.AST | str, str]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for flipped in FLIPS.get(type(op), ()):
                new = copy.deepcopy(node)
                new.ops[i] = flipped()
                found.append((new, f"`{SYMBOL[type(op)]}` -> `{SYMBOL[flipped]}`"))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        name, new_name = SYMBOL[type(node.op)], SYMBOL[other]
        found.append((ast.BoolOp(other(), node.values), f"`{name}` -> `{new_name}`"))
        for i, value in enumerate(node.values):
            rest = node.values[:i] + node.values[i + 1 :]
            kept = rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)
            found.append((kept, f"`{name}` operand dropped: {_short(value)}"))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.append((node.operand, f"`not` removed: {_short(node)}"))
    elif isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub):
        other = ast.Sub if isinstance(node.op, ast.Add) else ast.Add
        new = ast.BinOp(node.left, other(), node.right)
        found.append((new, f"`{SYMBOL[type(node.op)]}` -> `{SYMBOL[other]}`"))
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in NORMALIZERS
        and not node.args
        and not node.keywords
    ):
        found.append((node.func.value, f"`.{node.func.attr}()` removed"))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        found.append((repr(not node.value), f"`{node.value}` -> `{not node.value}`"))
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        for value in dict.fromkeys((node.value + 1, node.value - 1)):
            found.append((f"({value!r})", f"`{node.value!r}` -> `{value!r}`"))
    return found


def _conditions(tree: ast.AST) -> set[int]:
    """ids of the conditions that get a `not` added."""
    tests = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.While | ast.IfExp):
            tests.add(id(node.test))
        elif isinstance(node, ast.comprehension):
            tests.update(id(condition) for condition in node.ifs)
    return tests


def _excluded(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: annotations and docstrings."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        parts = [getattr(node, "annotation", None), getattr(node, "returns", None)]
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                parts.append(body[0])
        for part in parts:
            if part is not None:
                skip.update(id(sub) for sub in ast.walk(part))
    return skip


def _spans(tree: ast.AST, functions: list[str]) -> list[tuple[int, int]]:
    """Line spans of the functions or classes named (``name`` or ``Class.name``)."""
    spans: list[tuple[int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualified = prefix + child.name
                if child.name in functions or qualified in functions:
                    spans.append((child.lineno, child.end_lineno or child.lineno))
                visit(child, qualified + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _splice(lines: list[str], node: ast.AST, text: str, *, wrap: bool) -> str:
    """The source with ``node`` replaced by ``text``; line numbers are kept."""
    first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined,operator]
    start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
    # Offsets are in UTF-8 bytes.
    head = lines[first].encode()[:start].decode()
    tail = lines[last].encode()[end:].decode()
    padding = "\n" * (last - first)
    middle = f"({text}{padding})" if wrap else text + padding
    return "".join(lines[:first]) + head + middle + tail + "".join(lines[last + 1 :])


def mutants(source: str, functions: list[str], ranges: list[tuple[int, int]]) -> list[Mutant]:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    original = ast.dump(tree)
    spans = ranges + (_spans(tree, functions) if functions else [])
    if functions and not spans:
        raise SystemExit(f"no function or class named {', '.join(functions)}")
    skip, conditions = _excluded(tree), _conditions(tree)
    found: list[Mutant] = []
    seen: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno"):
            continue
        line, end = node.lineno, node.end_lineno or node.lineno
        if spans and not any(a <= line and end <= b for a, b in spans):
            continue
        candidates: list[tuple[str, str, bool]] = []
        for replacement, description in _expression_mutants(node):
            text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
            candidates.append((text, description, not isinstance(replacement, str)))
        # A single comparison's `not` is its flip, already a mutant.
        single = isinstance(node, ast.Compare) and len(node.ops) == 1
        if id(node) in conditions and not single and not isinstance(node, ast.UnaryOp):
            candidates.append((f"not ({ast.unparse(node)})", f"`not` added: {_short(node)}", True))
        if isinstance(node, STATEMENTS) and (
            not isinstance(node, ast.Expr) or isinstance(node.value, ast.Call | ast.Await)
        ):
            candidates.append(("pass", f"statement replaced by pass: {_short(node)}", False))
        for text, description, wrap in candidates:
            mutated = _splice(lines, node, text, wrap=wrap)
            try:
                changed = ast.dump(ast.parse(mutated)) != original
            except SyntaxError:
                continue
            if changed and mutated not in seen:
                seen.add(mutated)
                found.append(Mutant(0, line, description, mutated))
    found.sort(key=lambda m: m.line)
    for number, mutant in enumerate(found, start=1):
        mutant.number = number
    return found


def run_tests(copy_dir: Path, tests: list[str], timeout: float, bytecode: bool) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout' | 'probe', output) of one pytest run in the copy."""
    env = dict(os.environ, MUTATE_COPY=str(copy_dir))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy_dir), env.get("PYTHONPATH")]))
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    # --no-cov: the coverage that addopts asks for would only slow every mutant down.
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-cov"]
    command += ["-p", "_mutation_probe", *tests]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, cwd=copy_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, text=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return "timeout", process.communicate()[0]
    finally:
        if process.poll() is None:  # Ctrl-C while waiting
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode == PROBE_EXIT:
        return "probe", output
    return ("passed" if process.returncode == 0 else "failed"), output


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> int:  # noqa: PLR0912, PLR0915 - the whole run, step by step
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="path of the module, e.g. identity/links.py")
    parser.add_argument("tests", nargs="*", help="test files or node ids to run")
    parser.add_argument("--function", action="append", default=[], help="only mutate here")
    parser.add_argument("--lines", action="append", default=[], help="only lines A-B")
    parser.add_argument("--only", nargs="+", type=int, help="run only these mutant numbers")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--timeout", type=float, help="seconds per run (default: from baseline)")
    args = parser.parse_intermixed_args()

    module = (ROOT / args.module).resolve()
    relative = module.relative_to(ROOT)
    ranges = [tuple(map(int, r.split("-"))) for r in args.lines]
    source = module.read_text(encoding="utf-8")
    found = mutants(source, args.function, ranges)  # type: ignore[arg-type]
    if args.only:
        found = [m for m in found if m.number in args.only]
    lines = source.splitlines()
    if args.list:
        for m in found:
            print(f"#{m.number:<3} line {m.line:<4} {m.description}")
            print(f"      {lines[m.line - 1].strip()}")
        print(f"{len(found)} mutants in {relative}")
        return 0
    if not args.tests:
        parser.error("name the tests to run (or use --list)")

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # finally blocks run on TERM too
    repo_digest = _digest(source)
    copy_dir = Path(tempfile.mkdtemp(prefix="identity-mutate-")).resolve()
    target = copy_dir / relative
    counts = {"killed": 0, "survived": 0, "timeout": 0}
    survivors: list[Mutant] = []
    try:
        shutil.copytree(ROOT, copy_dir, ignore=SKIP, dirs_exist_ok=True)
        (copy_dir / "_mutation_probe.py").write_text(PROBE, encoding="utf-8")
        target.write_text(source, encoding="utf-8")  # the exact text the mutants come from
        check = subprocess.run(
            [sys.executable, "-c", "import identity; print(identity.__file__)"],
            cwd=copy_dir, capture_output=True, text=True, check=True,
            env=dict(os.environ, PYTHONPATH=str(copy_dir)),
        )  # fmt: skip
        imported = Path(check.stdout.strip()).resolve()
        if copy_dir not in imported.parents:
            raise SystemExit(f"identity is imported from {imported}, not from the copy")
        print(f"copy: {copy_dir} (identity imported from {imported})", flush=True)
        started = time.monotonic()
        outcome, output = run_tests(copy_dir, args.tests, 3600, bytecode=True)
        baseline = time.monotonic() - started
        if outcome != "passed":
            print(output[-3000:])
            raise SystemExit(f"the tests do not pass on the unmutated module ({outcome})")
        timeout = args.timeout or 3 * baseline + 15
        print(f"baseline passed in {baseline:.1f} s; timeout {timeout:.0f} s; {len(found)} mutants")
        for m in found:
            try:
                target.write_text(m.source, encoding="utf-8")
                for stale in target.parent.glob(f"__pycache__/{target.stem}.*.pyc"):
                    stale.unlink()
                started = time.monotonic()
                outcome, output = run_tests(copy_dir, args.tests, timeout, bytecode=False)
            finally:
                target.write_text(source, encoding="utf-8")
                assert _digest(target.read_text(encoding="utf-8")) == repo_digest
            if outcome == "probe":
                raise SystemExit(output[-2000:])
            state = {"failed": "killed", "passed": "survived", "timeout": "timeout"}[outcome]
            counts[state] += 1
            if state == "survived":
                survivors.append(m)
            took = time.monotonic() - started
            print(
                f"[{m.number}/{len(found)}] line {m.line}: {m.description}: {state} ({took:.1f} s)"
            )
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("\ninterrupted; the results below are partial")
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)
        if _digest(module.read_text(encoding="utf-8")) != repo_digest:
            print(f"note: {relative} changed in the checkout during the run (not by this script)")
    total = sum(counts.values())
    caught = counts["killed"] + counts["timeout"]
    score = 100 * caught / total if total else 100.0
    scope = " ".join(f"--function {f}" for f in args.function) + " ".join(
        f" --lines {r}" for r in args.lines
    )
    print(f"\n{relative}{' ' + scope.strip() if scope.strip() else ''}: {total} mutants, "
          f"{counts['killed']} killed, {counts['survived']} survived, {counts['timeout']} timeout"
          f": {score:.0f} % caught")  # fmt: skip
    for m in survivors:
        print(f"  survived #{m.number} line {m.line}: {m.description}")
        print(f"      {lines[m.line - 1].strip()}")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
