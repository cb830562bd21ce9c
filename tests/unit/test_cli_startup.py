"""The `identity` command starts fast: printing help loads no web or database stack.

Not a timed test (timing belongs to bench/cli.py and docs/performance.md): what is checked
is which modules a fresh interpreter has loaded, which decides the start-up time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

HEAVY = ("flask", "sqlalchemy", "authlib", "joserfc")
REPORT = (
    "import json, sys\n"
    "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} & set(%r))))\n"
)


def loaded(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter has loaded after ``code``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    result = subprocess.run(
        [sys.executable, "-c", code + "\n" + REPORT % (HEAVY,)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_command_loads_no_heavy_module():
    """`import identity.cli` and every command module: no Flask, SQLAlchemy, Authlib or
    joserfc (each command imports what it needs when it runs)."""
    code = (
        "import identity.cli\n"
        "from identity.cli import (\n"
        "    audit_commands, authz_commands, backup_commands, commands, db_commands,\n"
        "    groups_commands,\n"
        "    oauth_commands, rbac_common, roles_commands, users\n"
        ")"
    )
    assert loaded(code) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["users", "--help"],
        ["clients", "update", "--help"],
        ["db", "downgrade", "-h"],
        ["audit", "export", "--help"],
        ["backup", "restore", "--help"],
        ["roles", "assign", "--help"],
        ["authz", "check", "-h"],
    ],
    ids=" ".join,
)
def test_help_loads_no_heavy_module(args):
    """`identity ... --help` through the real entry point loads none of them either."""
    code = (
        "import contextlib, io, sys\n"
        f"sys.argv = ['identity', *{args!r}]\n"
        "from identity.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main()"
    )
    assert loaded(code) == []


def test_the_command_names_the_signing_algorithms_it_cannot_import():
    """The CLI's copy of the signing algorithms (kept to avoid importing joserfc) matches
    the key service's."""
    from identity.cli.oauth_commands import ALGORITHMS
    from identity.oauth.keys import ALGORITHMS as KEY_ALGORITHMS

    assert ALGORITHMS == KEY_ALGORITHMS


def _dashed_command() -> click.Command:
    from identity.cli import DashedArguments

    @click.command(cls=DashedArguments)
    @click.argument("value")
    @click.option("--yes", is_flag=True)
    def command(value: str, yes: bool) -> None:
        click.echo(f"{value} {yes}")

    return command


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (["-1"], "-1 False"),
        (["-1", "--yes"], "-1 True"),
        (["--yes", "-1"], "-1 True"),
        (["--", "-1"], "-1 False"),
        (["-qK3x_Ab"], "-qK3x_Ab False"),  # a key or client id that starts with a dash
        (["base"], "base False"),
    ],
)
def test_an_argument_may_start_with_a_dash(args, output):
    """`identity db downgrade -1` and ids starting with '-' are read as arguments."""
    result = CliRunner().invoke(_dashed_command(), args)
    assert result.exit_code == 0, result.output
    assert result.output == output + "\n"


def test_unknown_long_options_are_still_refused():
    """A misspelt option is still an error, not taken for the argument."""
    result = CliRunner().invoke(_dashed_command(), ["base", "--yse"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_serve_runs_with_the_default_garbage_collection():
    """`main` makes collections rarer while a command starts; the long-lived server gets the
    interpreter's defaults back before it starts."""
    import gc

    from identity.cli import DEFAULT_GC_THRESHOLD, START_UP_GC_THRESHOLD, cli, commands

    assert "serve" in commands.cli.commands  # registered by importing the module

    try:
        gc.set_threshold(*START_UP_GC_THRESHOLD)
        result = CliRunner().invoke(cli, ["serve", "--help"])
        assert result.exit_code == 0, result.output
        assert gc.get_threshold() == DEFAULT_GC_THRESHOLD
    finally:
        gc.set_threshold(*DEFAULT_GC_THRESHOLD)
