"""docker-compose.yml, checked without a Docker engine: it parses, publishes nothing beyond
127.0.0.1, keeps passwords out, and each of its `hpo` commands runs here, with the file's own
environment, against the local PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import REPO, free_port, run_hpo, start_hpo

COMPOSE = REPO / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$\$")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` and `$$` rules (the subset the file uses)."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        given = env.get(name)
        return given if given else (default or "")

    return _VARIABLE.sub(value, text)


def load(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


def test_compose_file_structure() -> None:
    compose = load({})
    services = compose["services"]
    assert set(services) == {"postgres", "pgbouncer", "create-study", "workers", "dashboard"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # No dashboard token in the file: from the environment, else a random one at start.
    assert services["dashboard"]["environment"]["HPO_DASHBOARD_TOKEN"] == ""
    assert "--no-token" not in str(services["dashboard"]["command"])
    assert "healthcheck" in services["postgres"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert services["workers"]["environment"]["HPO_CHECKPOINT_DIR"] == "/checkpoints"
    assert "checkpoints:/checkpoints" in services["workers"]["volumes"]
    devices = services["workers"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert (
        services["workers"]["depends_on"]["create-study"]["condition"]
        == "service_completed_successfully"
    )
    # The password is read from the environment, with a local-only default.
    raw = COMPOSE.read_text()
    assert "POSTGRES_PASSWORD: ${HPO_DB_PASSWORD:-" in raw
    assert (
        load({"HPO_DB_PASSWORD": "s3cret"})["services"]["postgres"]["environment"][
            "POSTGRES_PASSWORD"
        ]
        == "s3cret"
    )
    assert (REPO / "Dockerfile").read_text().count('ENTRYPOINT ["hpo"]') == 1
    # PgBouncer: optional, its password from the environment too, the tested pool settings.
    pooler = services["pgbouncer"]
    assert pooler["profiles"] == ["pooled"]
    assert "required:" not in raw  # Compose v2.20+ only; Debian's docker-compose 1.29 rejects it
    assert "HPO_DB_PASSWORD: ${HPO_DB_PASSWORD:-" in raw.split("pgbouncer:", 1)[1]
    start = (REPO / pooler["build"] / "start.sh").read_text()
    assert "%include ${PGBOUNCER_POOL_INI:-/etc/pgbouncer/pool.ini}" in start
    assert "umask 077" in start and "listen_addr = ${PGBOUNCER_LISTEN_ADDR:-0.0.0.0}" in start
    assert (
        "COPY pool.ini /etc/pgbouncer/pool.ini"
        in (REPO / pooler["build"] / "Dockerfile").read_text()
    )
    pooled = load({"HPO_DB_HOST": "pgbouncer", "HPO_DB_PORT": "6432"})["services"]
    assert "@pgbouncer:6432/" in pooled["workers"]["environment"]["HPO_STORAGE"]
    # Creating the study and the dashboard go to PostgreSQL itself, so that nothing but the
    # workers needs PgBouncer up (and nothing depends on a service of an inactive profile).
    for name in ("create-study", "dashboard"):
        assert "@postgres:5432/" in pooled[name]["environment"]["HPO_STORAGE"], name
        assert "pgbouncer" not in pooled[name]["depends_on"], name
    # Stopped before PostgreSQL (a service stops before those it depends on): the workers'
    # SIGTERM hand-back and the dashboard's last reads reach it.
    for name in ("workers", "dashboard"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    assert services["workers"]["stop_grace_period"] == "30s"  # a hand-back took 5.8 s
    # The published ports are settings, on loopback only.
    ports = load(
        {
            "HPO_DB_PUBLISH_PORT": "15432",
            "HPO_POOL_PUBLISH_PORT": "16432",
            "HPO_DASHBOARD_PORT": "18080",
        }
    )["services"]
    assert ports["postgres"]["ports"] == ["127.0.0.1:15432:5432"]
    assert ports["pgbouncer"]["ports"] == ["127.0.0.1:16432:6432"]
    assert ports["dashboard"]["ports"] == ["127.0.0.1:18080:18080"]
    # The dashboard prints the URL to open on the host, the published port, not its own address.
    assert "--public-url http://127.0.0.1:18080" in ports["dashboard"]["command"]
    assert services["postgres"]["ports"] == ["127.0.0.1:5432:5432"]


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


@pytest.mark.slow
@pytest.mark.server
def test_every_hpo_command_of_the_compose_file_runs_here(postgres_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "HPO_DB_USER": "postgres",
        "HPO_DB_HOST": "127.0.0.1",
        "HPO_DB_SERVER": "127.0.0.1",
        "HPO_DB_NAME": postgres_url.rsplit("/", 1)[1],
        "HPO_DB_PASSWORD": "unused-with-trust-auth",
        "HPO_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "HPO_DATASET": "synthetic",
        "HPO_EPOCHS": "1",
        "HPO_CREATE_ARGS": "--subset 10 --preset momentum",  # a 16-point grid
        "HPO_WORKERS": "--cpu 1",  # no GPU here; the default is --gpus 0 --per-gpu 8
        "HPO_DASHBOARD_BIND": "127.0.0.1",  # the container's 0.0.0.0 is its own loopback
        "HPO_DASHBOARD_PORT": str(port),
        "HPO_DASHBOARD_TOKEN": "compose-test-token",
    }
    services = load(env)["services"]
    storage = services["workers"]["environment"]["HPO_STORAGE"]
    service_env = {k: str(v) for k, v in services["workers"]["environment"].items()}

    for name in ("create-study", "workers"):
        own_env = {k: str(v) for k, v in services[name]["environment"].items()}
        result = run_hpo(*_command(services[name]), cwd=tmp_path, env=own_env)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    study = optuna.load_study(study_name="seed-grid", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 16

    dashboard_env = {k: str(v) for k, v in services["dashboard"]["environment"].items()}
    assert dashboard_env["HPO_DASHBOARD_TOKEN"] == env["HPO_DASHBOARD_TOKEN"]
    assert "HPO_DASHBOARD_TOKEN" not in service_env  # the workers are not given it
    dashboard = start_hpo(*_command(services["dashboard"]), cwd=tmp_path, env=dashboard_env)
    try:
        studies = None
        for _ in range(100):
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/studies",
                    headers={"Authorization": f"token {env['HPO_DASHBOARD_TOKEN']}"},
                )
                with urllib.request.urlopen(request) as response:
                    studies = json.load(response)["study_summaries"]
                    break
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "dashboard did not answer"
        assert [s["study_name"] for s in studies] == ["seed-grid"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)


def test_cpu_override_replaces_the_gpu_workers_with_cpu_workers() -> None:
    """docker-compose.cpu.yml, merged by Debian's docker-compose 1.29 (`config` needs no engine):
    the GPU workers move to a profile that is never on, and `cpu-workers` has no GPU reservation
    and the base file's settings. Compose v2 merges the same way (a sequence is appended to, so
    `profiles: [gpu]` holds under both; an `!reset` tag would break 1.29's YAML reader)."""
    cpu = REPO / "docker-compose.cpu.yml"
    assert "!reset" not in cpu.read_text() and "!override" not in cpu.read_text()
    if shutil.which("docker-compose") is None:
        message = "Debian's docker-compose is not installed (tests/setup.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    merged = subprocess.run(
        ["docker-compose", "--file", str(COMPOSE), "--file", str(cpu), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HPO_DB_PASSWORD": "pw"},
    )
    assert merged.returncode == 0, merged.stderr
    services = yaml.safe_load(merged.stdout)["services"]
    assert services["workers"]["profiles"] == ["gpu"]
    assert "deploy" in services["workers"]  # still the GPU workers, under their profile
    workers = services["cpu-workers"]
    assert "deploy" not in workers and "profiles" not in workers
    assert workers["command"] == "launch --study seed-grid --cpu 2"
    assert workers["environment"] == services["create-study"]["environment"] | {
        "HPO_STORAGE": services["workers"]["environment"]["HPO_STORAGE"]
    }
    assert workers["volumes"] == services["workers"]["volumes"]
    assert workers["stop_grace_period"] == services["workers"]["stop_grace_period"]
    assert workers["depends_on"] == services["workers"]["depends_on"]
    assert workers["image"] == services["workers"]["image"]
