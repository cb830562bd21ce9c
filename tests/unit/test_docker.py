"""The Docker files stay consistent with the repository. No Docker engine is needed: the
Dockerfile's instructions and compose.yaml are read as text (and YAML when PyYAML is there)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from identity.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SETTING_NAME = re.compile(r"\bIDENTITY_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_copies_files_that_exist():
    """Every COPY from the build context names a path that exists in the repository."""
    copies = [args for keyword, args in instructions() if keyword == "COPY"]
    assert copies
    for args in copies:
        if "--from=" in args:
            continue  # copied from an earlier build stage, not from the repository
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source missing: {source}"


def test_dockerfile_shape():
    """python:3.11-slim, non-root, healthcheck on /healthz, entry point that inits and serves."""
    pairs = instructions()
    assert all(args.split()[0] == "python:3.11-slim" for kw, args in pairs if kw == "FROM")
    users = [args for kw, args in pairs if kw == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(kw == "HEALTHCHECK" and "/healthz" in args for kw, args in pairs)
    assert any(kw == "VOLUME" for kw, _ in pairs)
    assert ("ENTRYPOINT", '["identity-entrypoint"]') in pairs
    cmd = next(args for kw, args in pairs if kw == "CMD")
    assert '"serve"' in cmd and '"0.0.0.0"' in cmd


def test_entrypoint_runs_init_then_serve():
    """The entry point is executable, runs `identity init` before serving, and execs."""
    script = DOCKER / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/sh")
    assert "identity init" in text
    assert 'exec identity "$@"' in text


def test_docker_files_name_only_real_settings():
    """Every IDENTITY_* variable in the Docker files is a setting."""
    known = {f"IDENTITY_{name.upper()}" for name in Settings.model_fields}
    for name in ("Dockerfile", "compose.yaml", "entrypoint.sh"):
        found = set(SETTING_NAME.findall((DOCKER / name).read_text()))
        assert found - known == set(), name


def test_compose_file_parses_and_wires_the_services():
    """compose.yaml is YAML with identity, postgres and redis, and a required secret key."""
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"identity", "postgres", "redis"}
    identity = services["identity"]
    build = identity["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    env = identity["environment"]
    assert env["IDENTITY_SECRET_KEY"].startswith("${IDENTITY_SECRET_KEY:?")
    assert env["IDENTITY_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["IDENTITY_DATABASE_URL"]
    assert env["IDENTITY_RATELIMIT_STORAGE_URL"].startswith("redis://redis:6379")
    assert set(identity["depends_on"]) == {"postgres", "redis"}
    assert any(v.endswith(":/var/lib/identity") for v in identity["volumes"])
