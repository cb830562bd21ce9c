"""A built wheel is complete: installed on its own it migrates a database and serves pages."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import Harness

REPOSITORY = Path(__file__).resolve().parents[2]

# Runs under the wheel's copy of the package; prints what the test checks.
SERVE_A_PAGE = """
import json
import identity
from identity import create_app, paths

app = create_app()
client = app.test_client()
sign_in = client.get("/sign-in")
style = client.get("/static/style.css")
print(json.dumps({
    "package": identity.__file__,
    "templates": str(paths.templates_dir()),
    "migrations": str(paths.migrations_dir()),
    "sign_in": [sign_in.status_code, "<h1>Sign in</h1>" in sign_in.get_data(as_text=True)],
    "style": style.status_code,
}))
"""


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    # check=False: the assertion below shows the output, which CalledProcessError would not.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.mark.slow
def test_wheel_install_migrates_and_serves(identity_factory: Harness, tmp_path: Path) -> None:
    """The wheel carries templates, static files, data and migrations; its `identity init`
    migrates a database and its app serves /sign-in without the source checkout."""
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPOSITORY)])
    (wheel,) = wheels.glob("identity-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "identity/templates/base.html",
        "identity/templates/accounts/sign_in.html",
        "identity/static/style.css",
        "identity/data/common-passwords.txt.gz",
        "identity/migrations/env.py",
        "identity/migrations/script.py.mako",
    ):
        assert required in names, required
    assert any(n.startswith("identity/migrations/versions/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]

    site = tmp_path / "site"
    run([*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)])
    instance = identity_factory.instance()
    # The wheel's copy first on the path; run outside the checkout so '' cannot find it.
    env = {**instance.env, "PYTHONPATH": str(site)}

    init = run([str(site / "bin" / "identity"), "init"], env=env, cwd=tmp_path)
    assert "bootstrap admin created" in init.stdout

    result = run([sys.executable, "-c", SERVE_A_PAGE], env=env, cwd=tmp_path)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    package = site / "identity"
    assert facts["package"] == str(package / "__init__.py")
    assert facts["templates"] == str(package / "templates")
    assert facts["migrations"] == str(package / "migrations")
    assert facts["sign_in"] == [200, True]
    assert facts["style"] == 200
