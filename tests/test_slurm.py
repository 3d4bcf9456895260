"""`hpo` under a real Slurm: a private cluster of several `slurmd` nodes on this machine
(tests.harness.slurm), the shipped batch script (examples/slurm/grid.sbatch) as a user submits it,
and one PostgreSQL study per scenario. The jobs train on the CPU: the cluster's GPUs are device
files for the scheduler to hand out (each task gets its CUDA_VISIBLE_DEVICES), which nothing opens.

Scenarios, all at once on one cluster: an array job runs the grid exactly once; `scancel` of a task
mid-trial hands its trial back for another task to resume; `scontrol requeue` runs the task again
and it picks the study back up; the time limit's early SIGTERM (`--signal`) hands the trial back
before Slurm kills the task; a node that dies (its slurmd and its job's processes SIGKILLed) has
its trial resumed elsewhere after the grace period. RELIABILITY.md records a run.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from tests.harness import slurm
from tests.helpers import REPO, STEADY_SPACE, assert_grid_exactly_once

pytestmark = [pytest.mark.slow, pytest.mark.server]
SCRIPT = str(REPO / "examples" / "slurm" / "grid.sbatch")
HEARTBEAT_S, GRACE_S = 1, 4
WORKER = f"--heartbeat {HEARTBEAT_S} --grace {GRACE_S} --poll 0.5"
GRID = "--sampler grid --dataset synthetic --subset 10 --epochs 3 --patience 1 --preset momentum"
# Trials long enough to be interrupted mid-way, neither stopped early nor pruned.
LONG = (
    "--dataset synthetic --subset 64 --epochs 40 --patience 40 --pruner none --sampler tpe "
    f"--space {STEADY_SPACE}"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm.SlurmCluster]:
    why_not = slurm.available()
    if why_not is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why_not} (CI=true: the Slurm tests must run)")
        pytest.skip(why_not)
    # Seven nodes of 2 CPUs: room for every scenario's tasks at once.
    with slurm.SlurmCluster.start(tmp_path_factory.mktemp("slurm"), nodes=7, cpus=2) as started:
        yield started


@dataclass
class Submission:
    """One scenario's study and the jobs submitted for it."""

    cluster: slurm.SlurmCluster
    url: str
    study: str
    folder: Path
    _optuna_storage: optuna.storages.RDBStorage | None = None

    def submit(self, *options: str, create: str = LONG, launch: str = "--cpu 1") -> str:
        environment = {
            "HPO_STORAGE": self.url,
            "HPO_STUDY": self.study,
            "HPO_CHECKPOINT_DIR": str(self.folder / "checkpoints"),
            "HPO_CREATE_ARGS": create,
            "HPO_LAUNCH_ARGS": f"{launch} {WORKER}",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1",
        }
        job_environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        return self.cluster.sbatch(
            SCRIPT,
            f"--output={self.folder}/job-%A_%a.out",
            f"--chdir={REPO}",
            *options,
            env={**job_environment, **environment},
        )

    def trials(self) -> list[FrozenTrial]:
        """The study's trials; none before a task of the job has created it. Read through one
        storage (one connection pool): a new one per look would hold connections of the
        server, which every test shares, until they were collected."""
        if self._optuna_storage is None:
            self._optuna_storage = optuna.storages.RDBStorage(self.url)
        try:
            return optuna.load_study(study_name=self.study, storage=self._optuna_storage).trials
        except KeyError:
            return []

    def running_past(self, epoch: int, count: int = 1, timeout: float = 120) -> list[FrozenTrial]:
        """Wait until `count` trials run, each past `epoch` epochs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [t for t in self.trials() if t.state == TrialState.RUNNING]
            if len(running) >= count and all(len(t.intermediate_values) >= epoch for t in running):
                return running
            time.sleep(0.2)
        raise AssertionError(f"{self.study}: no {count} trials past epoch {epoch}\n{self.output()}")

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("job-*.out")))


def _scenario(cluster: slurm.SlurmCluster, url: str, tmp_path: Path, name: str) -> Submission:
    folder = tmp_path / name
    folder.mkdir()
    return Submission(cluster=cluster, url=url, study=name, folder=folder)


def _array(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    started = time.monotonic()
    job = sub.submit("--array=0-2", "--cpus-per-task=1", create=GRID)
    states = cluster.wait(job, "COMPLETED", "FAILED", timeout=240)
    took = time.monotonic() - started
    out = sub.output()
    assert set(states.values()) == {"COMPLETED"}, out
    assert_grid_exactly_once(sub.url, preset="momentum", study_name=sub.study)
    # The launch line of a task given one core and one GPU: the threads come from Slurm's count.
    assert "1 CPU threads (1 CPU (SLURM_CPUS_PER_TASK=1) shared by 1 worker)" in out, out
    return f"array job of 3 tasks: the 16-point grid exactly once in {took:.0f} s"


def _gpus(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    """Two tasks on one node of two GPUs: Slurm gives one GPU 0 and the other GPU 1, and
    `hpo launch --gpus 0` in each counts its GPUs among those. This machine has no CUDA, so each
    refuses before it starts a worker, naming the GPU its job was given (the launcher's mapping
    of `--gpus 0` to that GPU: tests/hpo/study/test_launcher.py)."""
    job = sub.submit(
        "--array=0-1",
        "--cpus-per-task=1",
        f"--nodelist={cluster.nodes[-1]}",
        create=GRID,
        launch="--gpus 0 --per-gpu 1 --max-restarts 0",
    )
    cluster.wait(job, "COMPLETED", "FAILED", timeout=120)
    out = sub.output()
    refused = [line for line in out.splitlines() if line.startswith("error: --gpus 0: CUDA")]
    placed = {line.split("CUDA_VISIBLE_DEVICES=")[1].split(")")[0] for line in refused}
    assert len(refused) == 2 and placed == {"0", "1"}, out
    assert "[launch] gpu0.0" not in out, out  # no worker started
    return f"two tasks on one node, given CUDA_VISIBLE_DEVICES {sorted(placed)}; each refused"


def _handed_back(submission: Submission, timeout: float = 120) -> float:
    """Wait until a trial of the study is FAIL (its worker handed it back, or another failed
    it as stale); when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t.state == TrialState.FAIL for t in submission.trials()):
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{submission.study}: no trial handed back\n{submission.output()}")


def _resumed(submission: Submission, completed: int) -> list[int]:
    """Every trial of the budget finished once; the epochs each retry resumed from."""
    trials = submission.trials()
    # A retry may end PRUNED: a learning rate that diverges stops as "diverged".
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == completed, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return [
        t.user_attrs.get("resumed_from_epoch", 0)
        for t in done
        if t.user_attrs.get("resumed_from_epoch")
    ]


def _scancel(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    job = sub.submit("--array=0-1", "--cpus-per-task=1", create=f"{LONG} --n-trials 2")
    sub.running_past(3, count=2)
    cluster.run("scancel", f"{job}_0")
    cancelled = time.monotonic()
    handed_back = _handed_back(sub) - cancelled
    states = cluster.wait(job, "COMPLETED", "CANCELLED", "FAILED", timeout=300)
    assert states == {f"{job}_0": "CANCELLED", f"{job}_1": "COMPLETED"}, sub.output()
    resumed = _resumed(sub, completed=2)
    assert resumed and min(resumed) >= 2, sub.output()
    return (
        f"scancel of a task mid-trial: trial handed back {handed_back:.1f} s after scancel, "
        f"resumed from epoch {resumed[0]} by the other task"
    )


def _requeue(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    job = sub.submit("--array=0", "--cpus-per-task=1", create=f"{LONG} --n-trials 1")
    sub.running_past(3)
    cluster.run("scontrol", "requeue", f"{job}_0")
    requeued = time.monotonic()
    handed_back = _handed_back(sub) - requeued
    # Slurm holds a requeued job back (reason BeginTime, 120 s after the requeue here); the
    # test does not wait that out: it moves the start to now, as an admin can.
    reason, begins = _pending(cluster, f"{job}_0")
    held_s = (datetime.datetime.fromisoformat(begins) - datetime.datetime.now()).total_seconds()
    cluster.run("scontrol", "update", f"JobId={job}_0", "StartTime=now")
    deadline = time.monotonic() + 180
    restarted = None
    while time.monotonic() < deadline and restarted is None:
        running = [t for t in sub.trials() if t.state == TrialState.RUNNING]
        restarted = time.monotonic() - requeued if running else None
        time.sleep(0.2)
    states = cluster.wait(job, "COMPLETED", "FAILED", timeout=300)
    assert set(states.values()) == {"COMPLETED"}, sub.output()
    resumed = _resumed(sub, completed=1)
    assert resumed and resumed[0] >= 2, sub.output()
    return (
        f"scontrol requeue mid-trial: handed back {handed_back:.1f} s after; Slurm held the "
        f"requeued task ({reason}, {held_s:.0f} s more), and once released it ran the trial "
        f"again {restarted:.0f} s after the requeue and resumed it from epoch {resumed[0]}"
    )


def _pending(cluster: slurm.SlurmCluster, task: str, timeout: float = 30) -> tuple[str, str]:
    """A pending task's reason and expected start, once Slurm has requeued it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = cluster.run("squeue", "-h", "-j", task, "-o", "%T %r %S").split()
        if fields and fields[0] == "PENDING":
            return fields[1], fields[2]
        time.sleep(0.2)
    raise AssertionError(f"{task} never pending again")


def _time_limit(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    """SIGTERM 60 s before the time limit (`--signal=B:TERM@60`). The test shortens the limit
    to 2 minutes once the trial has reported an epoch (on a loaded machine the start alone can
    take a minute); slurmctld looks at time limits every 30 s and sends the warning at the
    first look within 30 s of its time, so it comes within 30 s of the change."""
    long_trial = LONG.replace("--epochs 40 --patience 40", "--epochs 1000 --patience 1000")
    job = sub.submit(
        "--array=0",
        "--cpus-per-task=1",
        "--time=5",
        "--signal=B:TERM@60",
        create=f"{long_trial} --n-trials 1",
    )
    sub.running_past(1)
    cluster.run("scontrol", "update", f"JobId={job}_0", "TimeLimit=2")
    shortened = time.monotonic()
    handed_back = _handed_back(sub, timeout=120) - shortened
    states = cluster.wait(job, "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", timeout=150)
    out = sub.output()
    assert "SIGTERM: stopping" in out and "handed back" in out, out
    trials = sub.trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], out
    epochs = len(trials[0].intermediate_values)
    assert epochs >= 1, out
    checkpoints = list((sub.folder / "checkpoints").rglob("*.pt"))
    assert checkpoints, "the handed-back trial left no checkpoint to resume from"
    return (
        f"time limit cut to 2 min with --signal=B:TERM@60: trial handed back {handed_back:.0f} s "
        f"after the change, after {epochs} epochs, checkpointed and queued again, before the "
        f"limit; the task ended {states[f'{job}_0']} (hpo launch exits 143 on SIGTERM)"
    )


def _dead_node(cluster: slurm.SlurmCluster, sub: Submission) -> str:
    # Two CPUs a task: one task per node.
    job = sub.submit("--array=0-1", "--cpus-per-task=2", create=f"{LONG} --n-trials 2")
    sub.running_past(3, count=2)
    node = cluster.run("squeue", "-h", "-j", f"{job}_0", "-o", "%N").strip()
    job_id = cluster.run("squeue", "-h", "-j", f"{job}_0", "-o", "%A").strip()
    cluster.kill_node(node, job_id)
    killed = time.monotonic()
    taken_over = _handed_back(sub) - killed
    # The study ends on the surviving task. Slurm requeues the dead node's task too (after
    # SlurmdTimeout, then held 120 s like any requeued job), which would find nothing left.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        trials = sub.trials()
        if len(trials) == 3 and all(t.state.is_finished() for t in trials):
            break
        time.sleep(0.5)
    finished = time.monotonic() - killed
    states = cluster.job_states(job)
    cluster.run("scancel", job)
    resumed = _resumed(sub, completed=2)
    assert resumed and min(resumed) >= 2, sub.output()
    return (
        f"node {node} dead (slurmd and its job SIGKILLed): its trial failed as stale "
        f"{taken_over:.1f} s after (grace {GRACE_S} s), resumed from epoch {resumed[0]} by the "
        f"other task, study done {finished:.0f} s after the kill; Slurm's view then: {states}"
    )


def test_slurm_jobs_run_the_study_once_on_what_they_were_given_and_lose_nothing(
    cluster: slurm.SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    """Every scenario at once, each on its own study: the dead node's first (its tasks want a
    node each and take the first two), then the GPU one (on the last node), then the rest."""
    scenarios = {
        "dead_node": _dead_node,
        "gpus": _gpus,
        "array": _array,
        "scancel": _scancel,
        "requeue": _requeue,
        "time_limit": _time_limit,
    }
    results: dict[str, str] = {}
    errors: dict[str, BaseException] = {}

    def play(name: str) -> None:
        began = time.monotonic()
        try:
            submission = _scenario(cluster, postgres_url, tmp_path, name)
            results[name] = scenarios[name](cluster, submission)
            results[name] += f" [scenario: {time.monotonic() - began:.0f} s]"
        except BaseException as error:
            errors[name] = error

    threads = []
    for name in scenarios:
        threads.append(threading.Thread(target=play, args=(name,)))
        threads[-1].start()
        time.sleep(1 if name in ("dead_node", "gpus") else 0)
    for thread in threads:
        thread.join(timeout=600)
    for name, line in results.items():
        print(f"{name}: {line}")
    assert not errors, errors
