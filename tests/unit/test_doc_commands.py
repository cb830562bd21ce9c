"""The shell commands the documentation shows keep working.

Commands are the fenced blocks tagged ``console`` in README.md and docs/*.md. Every such
block must be valid bash, and every ``identity`` command in it must exist with the options
it shows (``identity ... --help`` parses). A block whose fence is preceded, on the line
before, by a marker comment is treated further:

- ``<!-- doc-test: run -->``: run with bash (``set -euo pipefail``) in a scratch folder, on
  a fresh instance folder and SQLite database after ``identity init``, with this test
  environment's ``identity`` (as ``identity``, and as ``.venv/bin/identity``) and
  ``python``; every command must succeed.
- ``<!-- doc-test: walkthrough -->`` and ``<!-- doc-test: walkthrough browser -->``: the
  curl walk-through of docs/oidc.md, run against a real server by
  tests/integration/test_oidc_walkthrough.py; here only checked.

Production examples (PostgreSQL, ``serve``, Docker) carry no marker: checked, never run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = {"run", "walkthrough", "walkthrough browser"}
BIN = Path(sys.executable).parent
FENCE = re.compile(
    r"^(?:<!-- doc-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$",
    re.S | re.M,
)
# Tokens of the shell that end one simple command and start the next.
OPERATORS = {"&&", "||", "|", ";", "&", "(", ")", ";;"}
REDIRECTIONS = {">", ">>", "<", "<<", ">&", "&>", "<>"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    marker: str | None
    body: str

    @property
    def name(self) -> str:
        return f"{self.page.name}:{self.line}"


def console_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group("lang") != "console":
                continue
            line = text.count("\n", 0, match.start("lang")) + 1
            blocks.append(Block(page, line, match.group("marker"), match.group("body")))
    return blocks


BLOCKS = console_blocks()
RUN = [block for block in BLOCKS if block.marker == "run"]


def identity_commands(script: str) -> list[list[str]]:
    """The argument lists of the ``identity`` commands a script runs directly (the first
    word of a simple command is ``identity`` or a path ending in ``/identity``)."""
    script = re.sub(r"<<'?(\w+)'?\n.*?^\1$", "", script, flags=re.S | re.M)  # here-documents
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] | None = None
        at_start = True
        skip_next = False
        for token in lexer:
            if token in OPERATORS:
                current, at_start = None, True
            elif skip_next:
                skip_next = False
            elif token in REDIRECTIONS:
                skip_next = True  # the file name that follows
            elif at_start:
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
                    continue  # an assignment before the command
                at_start = False
                if token == "identity" or token.endswith("/identity"):
                    current = []
                    commands.append(current)
            elif current is not None:
                current.append(token)
    return commands


def test_the_documentation_has_checked_and_run_blocks():
    """The convention is in use: console blocks exist, some are run, and every marker is
    one the tests know (a misspelt marker would silently run nothing)."""
    assert len(BLOCKS) >= 10
    assert len(RUN) >= 5
    assert {block.marker for block in BLOCKS} <= MARKERS | {None}
    text = "\n".join(page.read_text() for page in PAGES)
    for marker in re.findall(r"^<!-- doc-test: (.*?) -->$", text, re.M):
        assert marker in MARKERS, marker
    assert sum(block.marker == "walkthrough browser" for block in BLOCKS) == 1


def test_production_examples_are_never_run():
    """Blocks that serve, reach PostgreSQL, install or build images carry no run marker."""
    for block in RUN:
        assert ["serve"] not in [args[:1] for args in identity_commands(block.body)], block.name
        for word in ("postgresql://", "createdb", "psql ", "pip install", "docker "):
            assert word not in block.body, f"{block.name} runs {word!r}"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_console_block_is_valid_bash(block: Block) -> None:
    """Each console block parses as bash (bash -n)."""
    result = subprocess.run(
        ["bash", "-n"], input=block.body, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{block.name}:\n{result.stderr}"


def _cli():  # type: ignore[no-untyped-def]
    from identity.cli import register_commands

    return register_commands()


def test_every_documented_identity_command_parses():
    """Every `identity ...` in a console block names existing commands and options:
    `identity <its arguments> --help` succeeds."""
    cli = _cli()
    checked = 0
    for block in BLOCKS:
        for args in identity_commands(block.body):
            options = args[: args.index("--")] if "--" in args else args
            result = CliRunner().invoke(cli, [*options, "--help"])
            assert result.exit_code == 0, (
                f"{block.name}: identity {shlex.join(args)}\n{result.output}"
            )
            assert "Usage: " in result.output
            checked += 1
    assert checked >= 15


def test_the_command_finder_sees_identity_commands_only_where_they_run():
    """The finder reads compound commands, continuations, pipes and assignments, and
    ignores `identity` used as a mere argument or inside a here-document."""
    script = (
        "X=1 identity init && .venv/bin/identity serve --port 1 # note\n"
        "printf '%s\\n' \"$P\" | identity users create a@b.c --password-stdin\n"
        "docker build -t identity .\n"
        "identity clients create --name 'A b' \\\n  --json > out.json\n"
        "python - <<'EOF'\nidentity keys list\nEOF\n"
    )
    assert identity_commands(script) == [
        ["init"],
        ["serve", "--port", "1"],
        ["users", "create", "a@b.c", "--password-stdin"],
        ["clients", "create", "--name", "A b", "--json"],
    ]


def _environment(instance: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "IDENTITY_INSTANCE_PATH": str(instance),
        "IDENTITY_DATABASE_URL": f"sqlite:///{instance / 'identity.db'}",
        "PASSWORD": PASSWORD,
    }


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance folder after `identity init` (copied for each block: one init only)."""
    instance = tmp_path_factory.mktemp("doc-commands") / "instance"
    init = subprocess.run(
        [str(BIN / "identity"), "init"],
        env=_environment(instance),
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return instance


@pytest.mark.parametrize("block", RUN, ids=lambda block: block.name)
def test_runnable_block_runs(block: Block, initialized: Path, tmp_path: Path) -> None:
    """The block runs to the end, every command succeeding, on a fresh SQLite instance."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    instance = tmp_path / "instance"
    shutil.copytree(initialized, instance)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.body],
        cwd=work,
        env=_environment(instance),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}\n{result.stderr}"
