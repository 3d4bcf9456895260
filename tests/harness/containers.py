"""The shipped compose stack run as containers on this machine: podman as the runtime, Debian's
docker-compose 1.29 as the front end (over podman's Docker-compatible socket), and stand-ins for
the registry's base images.

No registry is reachable here, so `python:3.11-slim`, `postgres:16` and `debian:bookworm-slim`
are built from Debian's packages (mmdebstrap) and tagged with the official names: the shipped
Dockerfiles and docker-compose.yml then run unchanged. They are stand-ins, not the official
images: the postgres one is Debian's PostgreSQL 15 behind an entry point that honours the
official image's POSTGRES_* settings (standins/postgres-entrypoint.sh).

Images stay in podman's store between runs (CI runs on one machine): a stand-in is rebuilt only
when its recipe changes (a label holds the recipe's hash), and the project's images are rebuilt
by `podman build`, whose layer cache keeps the dependency layer while pyproject.toml is
unchanged.

Run `python -m tests.harness.containers` to build (or check) every image and print the times.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO

STANDINS_DIR = Path(__file__).with_name("standins")
RECIPE_LABEL = "org.cifar-hpo.standin-recipe"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# This machine's podman needs both: root lacks CAP_SYS_RESOURCE (podman's default ulimits fail to
# be set), and its hybrid cgroups are refused by crun.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
events_logger = "file"
"""

# The host's pip configuration, the local package folders that it names and the certificates it
# trusts, visible to a build's RUN steps only (bind mounts do not end up in the image): the
# image's `pip install` then finds what this machine's pip finds, through this machine's proxy.
PIP_MOUNTS = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pip.conf",
    "/etc/xdg/pip",
    "/root/.config/pip/pip.conf",
    "/opt/wheels",
    "/opt/pypi",
    "/opt/pypi-more",
)

# The programs the harness drives, each from the Debian package of its name (tests/setup.sh
# installs them).
PROGRAMS = ("podman", "runc", "mmdebstrap", "docker-compose")


def missing_programs() -> list[str]:
    return [
        f"{program} (Debian's {program})" for program in PROGRAMS if shutil.which(program) is None
    ]


@dataclass(frozen=True, kw_only=True)
class StandIn:
    """A base image built from Debian's packages, tagged with the official image's name."""

    name: str
    packages: tuple[str, ...] = ()
    # mmdebstrap hooks, run with the new root as "$1" (files from standins/ as "$STANDINS").
    hooks: tuple[str, ...] = ()
    # Dockerfile instructions that `podman import --change` sets on the image.
    changes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # from standins/, part of the recipe

    def recipe_hash(self) -> str:
        digest = hashlib.sha256(
            json.dumps([self.name, self.packages, self.hooks, self.changes]).encode()
        )
        for name in self.files:
            digest.update((STANDINS_DIR / name).read_bytes())
        return digest.hexdigest()[:16]


STANDINS = (
    # The official python image's pip is on PATH and installs system-wide; Debian's python3
    # refuses that (PEP 668), so a virtual environment first on PATH stands in.
    StandIn(
        name="docker.io/library/python:3.11-slim",
        packages=("python3", "python3-venv", "ca-certificates"),
        hooks=('chroot "$1" python3 -m venv /opt/python',),
        changes=(f"ENV PATH=/opt/python/bin:{PATH}", 'CMD ["python3"]'),
    ),
    StandIn(
        name="docker.io/library/postgres:16",
        packages=("postgresql-15",),
        hooks=(
            'chroot "$1" pg_dropcluster 15 main',
            'cp "$STANDINS/postgres-entrypoint.sh" "$1/usr/local/bin/docker-entrypoint.sh"',
        ),
        changes=(
            "ENV PGDATA=/var/lib/postgresql/data",
            f"ENV PATH=/usr/lib/postgresql/15/bin:{PATH}",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            "EXPOSE 5432",
            # The official image's: a fast shutdown, which ends the sessions.
            "STOPSIGNAL SIGINT",
        ),
        files=("postgres-entrypoint.sh",),
    ),
    StandIn(name="docker.io/library/debian:bookworm-slim", changes=('CMD ["bash"]',)),
)


@dataclass(frozen=True, kw_only=True)
class ProjectImage:
    name: str
    context: Path


PROJECT_IMAGES = (
    ProjectImage(name="localhost/cifar-hpo:latest", context=REPO),
    ProjectImage(
        name="localhost/cifar-hpo-pgbouncer:latest", context=REPO / "docker" / "pgbouncer"
    ),
)


@dataclass(frozen=True, kw_only=True)
class BuildRecord:
    image: str
    seconds: float
    built: bool  # False: the image (or every layer) was already there
    size_bytes: int


@dataclass(kw_only=True)
class Podman:
    """podman with this machine's settings, through a configuration file of the harness's own
    (nothing in /etc changes)."""

    home: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result

    def label(self, image: str, label: str) -> str | None:
        result = self.run(
            "image",
            "inspect",
            "--format",
            f'{{{{ index .Config.Labels "{label}" }}}}',
            image,
            check=False,
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def image_id(self, image: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def ensure_standin(self, standin: StandIn, log: Path) -> BuildRecord:
        recipe = standin.recipe_hash()
        started = time.monotonic()
        if self.label(standin.name, RECIPE_LABEL) == recipe:
            return BuildRecord(
                image=standin.name,
                seconds=time.monotonic() - started,
                built=False,
                size_bytes=self.image_size(standin.name),
            )
        with tempfile.TemporaryDirectory(dir=self.home) as scratch:
            root_tar = Path(scratch) / "root.tar"
            command = ["mmdebstrap", "--variant=minbase", "--quiet"]
            if standin.packages:
                command.append("--include=" + ",".join(standin.packages))
            command += [f"--customize-hook={hook}" for hook in standin.hooks]
            command += ["bookworm", str(root_tar), str(DEBIAN_SOURCES)]
            with log.open("a") as out:
                subprocess.run(
                    command,
                    check=True,
                    stdout=out,
                    stderr=out,
                    timeout=900,
                    env={**os.environ, "STANDINS": str(STANDINS_DIR)},
                )
            changes = [*standin.changes, f"LABEL {RECIPE_LABEL}={recipe}"]
            self.run(
                "import",
                *[f"--change={change}" for change in changes],
                str(root_tar),
                standin.name,
                timeout=600,
            )
        return BuildRecord(
            image=standin.name,
            seconds=time.monotonic() - started,
            built=True,
            size_bytes=self.image_size(standin.name),
        )

    def build(self, image: ProjectImage, log: Path) -> BuildRecord:
        """`podman build` of a shipped Dockerfile, with the host's network and pip settings."""
        before = self.image_id(image.name)
        mounts = [f"--volume={path}:{path}:ro" for path in PIP_MOUNTS if Path(path).exists()]
        started = time.monotonic()
        with log.open("a") as out:
            result = subprocess.run(
                [
                    "podman",
                    "build",
                    "--network=host",
                    "--pull=never",
                    "--layers",
                    *mounts,
                    f"--tag={image.name}",
                    str(image.context),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=1800,
            )
        if result.returncode != 0:
            raise RuntimeError(f"podman build of {image.name} failed: see {log}")
        seconds = time.monotonic() - started
        # The image a rebuild replaced, untagged, is no longer needed; the layers of the new one
        # (its build cache) stay.
        self.run("image", "prune", "--force", check=False, timeout=300)
        return BuildRecord(
            image=image.name,
            seconds=seconds,
            built=self.image_id(image.name) != before,
            size_bytes=self.image_size(image.name),
        )


def ensure_images(podman: Podman, log: Path) -> list[BuildRecord]:
    """Every image the stack needs: the stand-ins, then the project's images."""
    records = [podman.ensure_standin(standin, log) for standin in STANDINS]
    records += [podman.build(image, log) for image in PROJECT_IMAGES]
    return records


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def _pings(socket_path: Path) -> bool:
    try:
        connection = _UnixConnection(str(socket_path))
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


@contextmanager
def docker_api(podman: Podman) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of the harness's own: the DOCKER_HOST value."""
    socket_path = podman.home / "podman.sock"
    socket_path.unlink(missing_ok=True)
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        env=podman.env,
        stdout=subprocess.DEVNULL,
        stderr=(podman.home / "service.log").open("a"),
    )
    try:
        deadline = time.monotonic() + 60
        while not _pings(socket_path):
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"podman system service did not start: {podman.home / 'service.log'}"
                )
            time.sleep(0.2)
        yield f"unix://{socket_path}"
    finally:
        service.terminate()
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        socket_path.unlink(missing_ok=True)


@contextmanager
def health_checks(podman: Podman, project: str, every: float = 1.0) -> Iterator[None]:
    """Run the project's containers' HEALTHCHECKs: without systemd, podman never runs them by
    itself, and `condition: service_healthy` would wait for ever."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            listed = podman.run(
                "ps", "--quiet", f"--filter=label=com.docker.compose.project={project}", check=False
            )
            for container in listed.stdout.split():
                podman.run("healthcheck", "run", container, check=False)

    thread = threading.Thread(target=loop, name="health-checks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def _netavark_rules(table: str) -> list[str]:
    shown = subprocess.run(
        ["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in shown.splitlines() if "NETAVARK" in line]


@contextmanager
def host_network_kept() -> Iterator[None]:
    """netavark turns IPv4 forwarding on and adds its chains to the host's firewall to publish
    ports; both are put back as they were. Only netavark's own chains and the rules that jump to
    them are removed (never a flush: other tests' rules stay), and only those it added here.
    Its per-port rules are gone by then: they leave with the containers."""
    setting = Path("/proc/sys/net/ipv4/ip_forward")
    forwarding = setting.read_text()
    tables = ("filter", "nat")
    before = {table: set(_netavark_rules(table)) for table in tables}
    try:
        yield
    finally:
        setting.write_text(forwarding)
        for table in tables:
            added = [rule for rule in _netavark_rules(table) if rule not in before[table]]
            chains = [rule.split()[1] for rule in added if rule.startswith("-N ")]
            for rule in added:  # the rules first, then the emptied chains
                if rule.startswith("-A "):
                    subprocess.run(
                        ["iptables", "-t", table, "-D", *shlex.split(rule)[1:]], check=False
                    )
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-F", chain], check=False)
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-X", chain], check=False)
        left = {table: set(_netavark_rules(table)) - before[table] for table in tables}
        assert not any(left.values()), f"firewall rules left behind: {left}"
        assert setting.read_text() == forwarding


@dataclass(frozen=True, kw_only=True)
class Compose:
    """Debian's docker-compose 1.29 on the shipped file(s), as one compose project."""

    project: str
    files: tuple[Path, ...]
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "--project-name", self.project]
        for file in self.files:
            command += ["--file", str(file)]
        result = subprocess.run(
            [*command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            # What the containers said is where the reason is.
            logs = subprocess.run(
                [*command, "logs", "--no-color", "--tail=40"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
            )
            raise RuntimeError(
                f"docker-compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\nlogs:\n{logs.stdout[-6000:]}"
            )
        return result


def leftovers(podman: Podman, project: str) -> dict[str, list[str]]:
    """The project's containers, volumes and networks that are still there."""
    label = f"--filter=label=com.docker.compose.project={project}"
    found = {
        "containers": podman.run("ps", "--all", "--quiet", label).stdout.split(),
        "volumes": podman.run("volume", "ls", "--quiet", label).stdout.split(),
        "networks": podman.run("network", "ls", "--quiet", label).stdout.split(),
    }
    return {kind: names for kind, names in found.items() if names}


def remove_project(podman: Podman, project: str) -> None:
    """Whatever a failed test left of its project: containers, then volumes and networks."""
    label = f"--filter=label=com.docker.compose.project={project}"
    for container in podman.run("ps", "--all", "--quiet", label, check=False).stdout.split():
        podman.run("rm", "--force", "--time=0", container, check=False)
    for volume in podman.run("volume", "ls", "--quiet", label, check=False).stdout.split():
        podman.run("volume", "rm", "--force", volume, check=False)
    for network in podman.run("network", "ls", "--quiet", label, check=False).stdout.split():
        podman.run("network", "rm", "--force", network, check=False)


def main(argv: Sequence[str]) -> int:
    missing = missing_programs()
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 1
    home = Path(argv[0]) if argv else Path(tempfile.gettempdir()) / "cifar-hpo-podman"
    podman = Podman(home=home)
    log = home / "build.log"
    print(f"building; the log is {log}", flush=True)
    for record in ensure_images(podman, log):
        state = "built" if record.built else "kept"
        print(
            f"{record.image}: {state} in {record.seconds:.1f} s, {record.size_bytes / 1e9:.2f} GB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
