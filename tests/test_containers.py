"""The shipped compose stack, built and run as containers: the images from the shipped
Dockerfiles, docker-compose.yml with docker-compose.cpu.yml (this machine has no GPU), Debian's
docker-compose 1.29 over podman (tests/harness/containers.py says how, and which base images are
stand-ins built from Debian's packages).

What a user does on the first day, in order: `up`; `create-study` run again; the dashboard, on
loopback only, behind its token; `stop` while trials run, `up` again, `down` while trials run,
`up` again; the study finishes every grid point exactly once, the interrupted trials resumed from
the checkpoints in the volume; `down -v` leaves nothing behind. Then the `pooled` profile, the
workers going through PgBouncer.

Needs root, podman, runc, mmdebstrap and docker-compose (tests/setup.sh installs them); skips
without them on a laptop, fails under CI=true. The first run builds the images (4.5 minutes on
CPU-A, BENCHMARKS.md §10); podman keeps them, and later runs rebuild only what changed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import optuna
import psycopg
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.record.trial_record import HANDED_BACK, TrialRecord
from tests.harness import containers
from tests.harness.containers import BuildRecord, Compose, Podman
from tests.helpers import REPO, free_port

pytestmark = [pytest.mark.slow, pytest.mark.containers]

FILES = (REPO / "docker-compose.yml", REPO / "docker-compose.cpu.yml")
STUDY = "quick"
GRID = {(lr, bs) for lr in (0.01, 0.03) for bs in (32, 64)}  # examples/spaces/quick-grid.yaml
WORKERS = 2


@dataclass(frozen=True, kw_only=True)
class Runtime:
    podman: Podman
    docker_host: str
    builds: list[BuildRecord]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    missing = containers.missing_programs()
    if os.geteuid() != 0:
        missing.append("root (podman's rootful store, mmdebstrap, netavark's firewall rules)")
    if missing:
        message = "the container test needs " + ", ".join(missing) + " (tests/setup.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true: it must run")
        pytest.skip(message)
    podman = Podman(home=tmp_path_factory.mktemp("podman"))
    builds = containers.ensure_images(podman, podman.home / "build.log")
    for record in builds:
        print(
            f"image {record.image}: {'built' if record.built else 'kept'} in "
            f"{record.seconds:.1f} s, {record.size_bytes / 1e9:.2f} GB"
        )
    with containers.host_network_kept(), containers.docker_api(podman) as docker_host:
        yield Runtime(podman=podman, docker_host=docker_host, builds=builds)


@dataclass(frozen=True, kw_only=True)
class Stack:
    compose: Compose
    podman: Podman
    project: str
    db_port: int
    dashboard_port: int
    token: str
    password: str

    @property
    def storage(self) -> str:
        return f"postgresql+psycopg://hpo:{self.password}@127.0.0.1:{self.db_port}/hpo"

    def trials(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name=STUDY, storage=self.storage).get_trials(deepcopy=False)

    def container(self, service: str) -> str:
        listed = self.podman.run(
            "ps",
            "--all",
            "--quiet",
            f"--filter=label=com.docker.compose.project={self.project}",
            f"--filter=label=com.docker.compose.service={service}",
        ).stdout.split()
        assert len(listed) == 1, f"{service}: {listed}"
        return listed[0]

    def exit_code(self, service: str) -> int | None:
        """The service's container's exit code; None while it runs."""
        running, code = self.podman.run(
            "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", self.container(service)
        ).stdout.split()
        return None if running == "true" else int(code)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


@contextmanager
def stack(runtime: Runtime, **settings: str) -> Iterator[Stack]:
    """A compose project of the test's own: its own name, free ports, a random database password
    and dashboard token; whatever is left of it is removed afterwards, however the test ended."""
    project = f"hpotest{secrets.token_hex(4)}"
    password, token = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    db_port, pool_port, dashboard_port = free_port(), free_port(), free_port()
    env = {
        **runtime.podman.env,
        "DOCKER_HOST": runtime.docker_host,
        "HPO_DB_PASSWORD": password,
        "HPO_DASHBOARD_TOKEN": token,
        "HPO_DB_PUBLISH_PORT": str(db_port),
        "HPO_POOL_PUBLISH_PORT": str(pool_port),
        "HPO_DASHBOARD_PORT": str(dashboard_port),
        "HPO_STUDY": STUDY,
        "HPO_DATASET": "digits",
        "HPO_CREATE_ARGS": "--space examples/spaces/quick-grid.yaml --pruner none",
        "HPO_WORKERS": f"--cpu {WORKERS}",
        **settings,
    }
    compose = Compose(project=project, files=FILES, env=env)
    built = Stack(
        compose=compose,
        podman=runtime.podman,
        project=project,
        db_port=db_port,
        dashboard_port=dashboard_port,
        token=token,
        password=password,
    )
    with containers.health_checks(runtime.podman, project):
        try:
            yield built
        finally:
            compose("down", "--volumes", "--remove-orphans", "--timeout", "40", check=False)
            containers.remove_project(runtime.podman, project)


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, psycopg.Error, KeyError, ValueError):
            pass  # not up yet: the server, the study
        except Exception as error:  # SQLAlchemy's and Optuna's while the server starts
            if "connect" not in str(error).lower() and "not found" not in str(error).lower():
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(1)


def running_with_epochs(stack: Stack, epochs: int, before: int | None = None) -> list[int]:
    """The running trials whose last reported epoch is at least `epochs` (and below `before`)."""
    return [
        trial.number
        for trial in stack.trials()
        if trial.state == TrialState.RUNNING
        and epochs <= max(trial.intermediate_values, default=-1) < (before or 1 << 30)
    ]


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def host_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    shown = subprocess.run(
        ["ip", "-4", "-o", "address", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[3].split("/")[0] for line in shown.splitlines()]


def refuses(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return True
    return False


def ended_since(podman: Podman, project: str, since: float) -> dict[str, tuple[int, float]]:
    """Each service's container that ended since `since` (a time.time()): its exit code, and
    when, in seconds after `since`. From podman's event log, which outlives the containers that
    `down` removed."""
    shown = podman.run(
        "events",
        "--stream=false",
        f"--since={int(since) - 1}",
        "--filter=event=died",
        f"--filter=label=com.docker.compose.project={project}",
        "--format=json",
    ).stdout
    ended: dict[str, tuple[int, float]] = {}
    for line in shown.splitlines():
        event = json.loads(line)
        at = datetime.fromisoformat(event["Time"][:26].rstrip("Z") + "+00:00").timestamp()
        service = event["Attributes"]["com.docker.compose.service"]
        if at >= since and event["Attributes"].get("com.docker.compose.oneoff") == "False":
            ended[service] = (int(event.get("ContainerExitCode", 0)), at - since)  # 0: left out
    return ended


def interrupt_running_trials(stack: Stack, action: str, *services: str) -> list[int]:
    """`stop` or `down` while both workers train: every container ends on its signal (none is
    killed), and each running trial is handed back, none left running. The trials' numbers."""
    epochs = int(stack.compose.env["HPO_EPOCHS"])
    # Past their first epochs, and far from their last: still running when the signal comes.
    wait_for(
        f"{WORKERS} trials between epochs 3 and {epochs - 15}",
        lambda: len(running_with_epochs(stack, 3, before=epochs - 15)) >= WORKERS,
        timeout=300,
    )
    running = running_with_epochs(stack, 3)
    since = time.time()
    stack.compose(action, timeout=180)
    took = time.time() - since
    ended = ended_since(stack.podman, stack.project, since)
    print(
        f"{action} while {len(running)} trials ran: {took:.1f} s; "
        + ", ".join(f"{name} exit {code} after {at:.1f} s" for name, (code, at) in ended.items())
    )
    # 143: `hpo launch` ended on SIGTERM after its workers handed back; 137 would be a kill. The
    # dashboard, PostgreSQL (and PgBouncer) end on their stop signal, not on the kill after 10 s.
    expected = {"cpu-workers": 143, "dashboard": 0, "postgres": 0} | dict.fromkeys(services, 0)
    assert {name: ended[name][0] for name in expected if name in ended} == expected, ended
    return running


def check_handed_back(stack: Stack, numbers: list[int]) -> None:
    """Each trial was handed back by its worker: a worker killed, or cut off from the database
    before it could write, leaves its trial RUNNING, to be failed later as stale."""
    by_number = {trial.number: trial for trial in stack.trials()}
    for number in numbers:
        trial = by_number[number]
        assert trial.state == TrialState.FAIL, (number, trial.state)
        assert TrialRecord.from_trial(trial).stop_reason == HANDED_BACK, trial.user_attrs


def test_compose_stack_runs_stops_resumes_and_finishes_the_grid(runtime: Runtime) -> None:
    # Trials of about 30 s each on these 2 cores (a minute in the full suite): the 4 grid points
    # outlast a stop, an `up` and a `down`, whichever trials are running at each.
    with stack(runtime, HPO_EPOCHS="80", HPO_PATIENCE="80") as it:
        started = time.monotonic()
        it.compose("up", "--detach", timeout=300)
        wait_for("the first epoch", lambda: bool(running_with_epochs(it, 1)), timeout=300)
        print(f"up: the first epoch reported {time.monotonic() - started:.1f} s after `up`")

        # Every published port is on loopback, and the dashboard answers only with its token.
        for service in ("postgres", "dashboard"):
            ports = it.podman.run(
                "inspect",
                "--format",
                "{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIP}} {{end}}{{end}}",
                it.container(service),
            ).stdout.split()
            assert ports and set(ports) == {"127.0.0.1"}, (service, ports)
        page = f"http://127.0.0.1:{it.dashboard_port}/dashboard/"
        wait_for("the dashboard", lambda: http_status(page) == 403, timeout=120)
        assert http_status(f"{page}?token={it.token}") == 200
        assert http_status(page, {"Authorization": f"token {it.token}"}) == 200
        assert http_status(page, {"Authorization": "token wrong"}) == 403
        # What `docker compose logs dashboard` shows: the URL to open here, with no warning.
        printed = it.logs("dashboard")
        assert f"on {page.removesuffix('/')}?token={it.token}" in printed, printed
        assert "warning" not in printed, printed
        for address in host_addresses():
            assert refuses(address, it.dashboard_port), f"dashboard reachable on {address}"
            assert refuses(address, it.db_port), f"PostgreSQL reachable on {address}"

        assert "created grid" in it.logs("create-study")
        # The image runs as its own user, not root.
        for service in ("cpu-workers", "dashboard"):
            user = it.podman.run("exec", it.container(service), "id", "-un").stdout.strip()
            assert user == "hpo", (service, user)

        # create-study again, while the workers run: it finds the study, and queues nothing.
        queued = len(it.trials())
        again = it.compose("run", "--rm", "create-study", timeout=180)
        assert "exists with the same settings" in again.stdout, again.stdout + again.stderr
        assert optuna.get_all_study_names(it.storage) == [STUDY]
        assert len(it.trials()) == queued

        stopped = interrupt_running_trials(it, "stop")
        # `stop` keeps the containers: the workers' own last words.
        assert it.logs("cpu-workers").count("handed back (queued again") == WORKERS
        it.compose("up", "--detach", timeout=300)
        wait_for("a restarted worker", lambda: bool(running_with_epochs(it, 1)), timeout=300)
        check_handed_back(it, stopped)
        taken_down = interrupt_running_trials(it, "down")
        it.compose("up", "--detach", timeout=300)  # the volumes kept the database and checkpoints
        wait_for("the study after `down`", lambda: bool(it.trials()), timeout=300)
        check_handed_back(it, taken_down)
        wait_for("the grid to finish", lambda: it.exit_code("cpu-workers") == 0, timeout=900)
        trials = it.trials()
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        points = [(t.params["learning_rate"], t.params["batch_size"]) for t in finished]
        assert sorted(points) == sorted(GRID), points  # every grid point, exactly once
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        # Each interrupted trial went on from its checkpoint, not from the first epoch.
        resumed = [TrialRecord.from_trial(t).resumed_from_epoch for t in finished]
        assert sum(1 for epoch in resumed if epoch) >= WORKERS, resumed
        # Each `up` ran create-study again (after `down`, in a new container): it found the study.
        assert "exists with the same settings" in it.logs("create-study")

        it.compose("down", "--volumes", timeout=180)
        assert containers.leftovers(it.podman, it.project) == {}
        for port in (it.db_port, it.dashboard_port):
            assert refuses("127.0.0.1", port)
            rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            assert f"--dport {port}" not in rules, f"a firewall rule for port {port} is left"


def test_pooled_profile_runs_the_workers_through_pgbouncer(runtime: Runtime) -> None:
    pooled = {"COMPOSE_PROFILES": "pooled", "HPO_DB_HOST": "pgbouncer", "HPO_DB_PORT": "6432"}
    with stack(runtime, HPO_EPOCHS="30", HPO_PATIENCE="30", **pooled) as it:
        it.compose("up", "--detach", timeout=300)
        wait_for("a running trial", lambda: bool(running_with_epochs(it, 1)), timeout=300)

        def address(service: str) -> str:
            return it.podman.run(
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                it.container(service),
            ).stdout.strip()

        pooler, workers = address("pgbouncer"), address("cpu-workers")
        with psycopg.connect(
            host="127.0.0.1", port=it.db_port, user="hpo", password=it.password, dbname="hpo"
        ) as admin:
            clients = {
                str(row[0])
                for row in admin.execute(
                    "SELECT client_addr FROM pg_stat_activity "
                    "WHERE usename = 'hpo' AND pid <> pg_backend_pid() AND client_addr IS NOT NULL"
                )
            }
        assert pooler in clients and workers not in clients, (pooler, workers, clients)

        # `down` stops PgBouncer and the workers at once: the hand-back still goes through it.
        taken_down = interrupt_running_trials(it, "down", "pgbouncer")
        it.compose("up", "--detach", timeout=300)
        wait_for("the study after `down`", lambda: bool(it.trials()), timeout=300)
        check_handed_back(it, taken_down)
        wait_for(
            "the grid to finish",
            lambda: len([t for t in it.trials() if t.state == TrialState.COMPLETE]) == len(GRID),
            timeout=600,
        )
        it.compose("down", "--volumes", timeout=180)
        assert containers.leftovers(it.podman, it.project) == {}
