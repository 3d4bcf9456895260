"""A private Slurm cluster on this machine, for the tests: one `slurmctld`, several `slurmd`
"nodes" (Debian builds Slurm with multiple-slurmd support) and a `munged` of its own, all with
their own configuration, ports, sockets and spool folders under one directory, started in
seconds and stopped with every process they started.

    with SlurmCluster.start(folder, nodes=3) as cluster:
        job = cluster.sbatch("examples/slurm/grid.sbatch", "--array=0-2", env={...})
        cluster.wait(job, "COMPLETED")

Client commands (`sbatch`, `squeue`, `scontrol`, `scancel`) find it through SLURM_CONF.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "squeue", "scancel")


def available() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not _sbin(name)]
    if missing:
        return f"Slurm or munge missing ({', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the private Slurm cluster runs its daemons as root"
    return None


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


def _command(name: str) -> str:
    found = shutil.which(name) or _sbin(name)
    assert found is not None, name
    return found


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class SlurmCluster:
    folder: Path
    nodes: list[str]
    env: dict[str, str]  # what client commands need (SLURM_CONF)
    daemons: list[subprocess.Popen[bytes]]  # every daemon started, in order
    slurmd: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # by node name

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, folder: Path, nodes: int = 3, cpus: int = 2, gpus: int = 2
    ) -> Iterator[SlurmCluster]:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        names = [f"n{k}" for k in range(1, nodes + 1)]
        ctld_port, *node_ports = _free_ports(1 + nodes)
        munge_socket = folder / "munge.sock"
        conf = folder / "slurm.conf"
        host = socket.gethostname()
        lines = [
            "ClusterName=hpotest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            f"StateSaveLocation={folder / 'ctld'}",
            f"SlurmdSpoolDir={folder / 'spool-%n'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={folder / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "SlurmdTimeout=10",
            "InactiveLimit=0",
            "KillWait=10",
            "MinJobAge=300",
            "JobRequeue=1",
            "GresTypes=gpu",
            # Slurm's own timers, short: the test waits on them.
            "MessageTimeout=5",
        ]
        # Each node has `gpus` GPUs for the scheduler to hand out (GPU lines of a batch script
        # then run as written): device files named as NVIDIA's, so that Slurm exports each
        # task's CUDA_VISIBLE_DEVICES. They are /dev/null's twins, which nothing opens: the jobs
        # train on the CPU.
        gres = []
        for name, port in zip(names, node_ports, strict=True):
            lines.append(
                f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={cpus} RealMemory=2000 Gres=gpu:{gpus} State=UNKNOWN"
            )
            devices = folder / "dev" / name
            devices.mkdir(parents=True, exist_ok=True)
            for index in range(gpus):
                device = devices / f"nvidia{index}"
                if not device.exists():  # Slurm wants a device: /dev/null's numbers
                    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            gres.append(f"NodeName={name} Name=gpu File={devices}/nvidia[0-{gpus - 1}]")
        (folder / "gres.conf").write_text("\n".join(gres) + "\n")
        lines.append(f"PartitionName=main Nodes={','.join(names)} Default=YES MaxTime=INFINITE")
        conf.write_text("\n".join(lines) + "\n")
        (folder / "ctld").mkdir(exist_ok=True)
        for name in names:
            (folder / f"spool-{name}").mkdir(exist_ok=True)
        env = {**os.environ, "SLURM_CONF": str(conf)}
        daemons: list[subprocess.Popen[bytes]] = []
        cluster = cls(folder=folder, nodes=names, env=env, daemons=daemons)
        try:
            cluster._start_munge(munge_socket)
            daemons.append(cluster._daemon("slurmctld", "-D", "-i", "-f", str(conf)))
            for name in names:
                cluster.slurmd[name] = cluster._daemon("slurmd", "-D", "-N", name, "-f", str(conf))
                daemons.append(cluster.slurmd[name])
            cluster._wait_for_nodes()
            yield cluster
        finally:
            cluster.stop()

    def _start_munge(self, munge_socket: Path) -> None:
        key = self.folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.daemons.append(
            self._daemon(
                "munged",
                "--foreground",
                "--force",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.folder / 'munged.pid'}",
                f"--log-file={self.folder / 'munged.log'}",
                f"--seed-file={self.folder / 'munged.seed'}",
            )
        )
        deadline = time.monotonic() + 10
        while not munge_socket.exists():
            assert time.monotonic() < deadline, self._log("munged.log")
            time.sleep(0.05)

    def _daemon(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 (kept by the process)
        return subprocess.Popen(
            [_command(name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def _wait_for_nodes(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            if len(states) == len(self.nodes) and all(
                s.startswith("idle") for s in states.values()
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"nodes not idle: {self.node_states()}\n{self._log('slurmctld.log')}")

    def _log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text()[-3000:] if path.exists() else f"(no {name})"

    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(
            [_command(command[0]), *command[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: {result.stderr.strip()}")
        return result.stdout

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False)
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def sbatch(self, script: str, *options: str, env: dict[str, str] | None = None) -> str:
        """Submit `script`; its job id. `env`: the environment it is submitted from (sbatch
        passes it on to the job), instead of this process's."""
        result = subprocess.run(
            [_command("sbatch"), "--parsable", *options, script],
            env={**(os.environ if env is None else env), "SLURM_CONF": self.env["SLURM_CONF"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"sbatch: {result.stderr.strip()}")
        return result.stdout.strip().split(";")[0]

    def job_states(self, job: str) -> dict[str, str]:
        """Each task's state: {"123_0": "RUNNING", …} (or {"123": …} for a job that is not an
        array), from `scontrol`, which still knows finished jobs for MinJobAge."""
        out = self.run("scontrol", "-o", "show", "job", job, check=False)
        states = {}
        for line in out.splitlines():
            fields = dict(field.split("=", 1) for field in line.split() if "=" in field)
            task = fields.get("ArrayTaskId")
            name = f"{fields['ArrayJobId']}_{task}" if task and task != "N/A" else fields["JobId"]
            states[name] = fields["JobState"]
        return states

    def wait(self, job: str, *finals: str, timeout: float = 300) -> dict[str, str]:
        """Wait until every task of `job` is in one of `finals` states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.job_states(job)
            if states and all(state in finals for state in states.values()):
                return states
            time.sleep(0.3)
        raise AssertionError(f"job {job}: {self.job_states(job)}\n{self._log('slurmctld.log')}")

    def kill_node(self, node: str, job_id: str) -> None:
        """The node dies: its slurmd, and every process of job `job_id` (slurmstepd and the
        job's own), SIGKILLed, with no chance to say anything."""
        os.kill(self.slurmd[node].pid, signal.SIGKILL)
        for pid in job_process_ids(f"SLURM_JOB_ID={job_id}\0") + stepd_ids(job_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the daemons and every job process they started (slurmstepd and below)."""
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--user=root", check=False)
        for process in reversed(self.daemons):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.daemons:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pid in job_process_ids(str(self.folder)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stepd_ids(job_id: str) -> list[int]:
    """The slurmstepd processes of a job (named "slurmstepd: [JOB.STEP]")."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(b"slurmstepd:") and f"[{job_id}.".encode() in command:
            found.append(int(entry.name))
    return found


def job_process_ids(marker: str) -> list[int]:
    """Processes whose environment names this cluster's configuration (its jobs' processes,
    which inherit SLURM_CONF), found in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found
