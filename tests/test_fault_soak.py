"""A seeded fault soak: several workers on a PostgreSQL of the test's own run the seed's grid
while a random schedule, drawn from a printed seed, hits them for a bounded time: `kill -9`,
a freeze (SIGSTOP) longer than the grace followed by SIGCONT, SIGTERM, every server session
terminated, and server restarts, while replacement workers start, some in the middle of a
restart. The server is the test's own, so restarting it disturbs no test running beside it.

At the end: every grid point finished exactly once, nothing is left RUNNING or WAITING, every
failed trial was queued again, every worker that was not killed exited 0 (143 after its
SIGTERM), and no trial's curves have a gap or a repeated epoch. `HPO_SOAK_SEED=N` replays a
schedule.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.record.lineage import retry_history
from tests.harness.pooled_postgres import Missing
from tests.harness.preloaded import PreloadedProcess
from tests.harness.private_postgres import PrivatePostgres, private_postgres
from tests.helpers import FAST_HEARTBEAT, assert_grid_exactly_once, create_small_grid, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.server]

SOAK_S = 60  # how long faults are thrown
WORKERS = 4
GRACE_S = int(FAST_HEARTBEAT[FAST_HEARTBEAT.index("--grace") + 1])
PRESET, EPOCHS = "batchnorm", 8  # 128 short trials: the grid lasts about as long as the soak
ACTIONS = ("kill", "freeze", "term", "cut_sessions", "restart")
MAX_RESTARTS = 2


@dataclass
class Worker:
    process: PreloadedProcess
    fate: str = "runs"  # runs, killed, termed
    frozen: bool = False


@dataclass
class Soak:
    server: PrivatePostgres
    cwd: Path
    rng: random.Random
    workers: list[Worker] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    restarts: int = 0
    thaws: list[threading.Timer] = field(default_factory=list)

    def start_worker(self) -> None:
        self.workers.append(
            Worker(start_worker(self.server.url, "grid", self.cwd, "--outage", "120"))
        )

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None and not w.frozen]

    def act(self, at: float) -> None:
        action = self.rng.choice(ACTIONS)
        if action == "restart" and self.restarts >= MAX_RESTARTS:
            action = "cut_sessions"
        live = self.live()
        if action in ("kill", "freeze", "term") and len(live) < 2:
            action = "cut_sessions"  # keep one worker going whatever happens
        self.log.append(f"{at:5.1f} s {action}")
        if action == "kill":
            victim = self.rng.choice(live)
            victim.fate = "killed"
            victim.process.send_signal(signal.SIGKILL)
            self.start_worker()
        elif action == "term":
            victim = self.rng.choice(live)
            victim.fate = "termed"
            victim.process.send_signal(signal.SIGTERM)
            self.start_worker()
        elif action == "freeze":
            victim = self.rng.choice(live)
            victim.frozen = True
            victim.process.send_signal(signal.SIGSTOP)
            thaw = threading.Timer(GRACE_S + 2, self._thaw, args=(victim,))
            thaw.start()
            self.thaws.append(thaw)
        elif action == "cut_sessions":
            self.server.terminate_sessions()
        else:
            self.restarts += 1
            self.server.stop()
            self.start_worker()  # a replacement starting while the server is down
            time.sleep(self.rng.uniform(1.0, 3.0))
            self.server.start()

    def _thaw(self, worker: Worker) -> None:
        worker.process.send_signal(signal.SIGCONT)
        worker.frozen = False


def _grid_done(url: str) -> bool:
    study = optuna.load_study(study_name="grid", storage=url)
    return not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))


def test_workers_under_a_seeded_schedule_of_faults_lose_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("HPO_SOAK_SEED", random.randrange(1_000_000)))
    print(f"fault soak seed {seed} (HPO_SOAK_SEED={seed} replays this schedule)")
    try:
        context = private_postgres()
        server = context.__enter__()
    except (Missing, OSError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start a private PostgreSQL under CI=true: {error}")
        pytest.skip(f"cannot start a private PostgreSQL: {error}")
    try:
        create_small_grid(server.url, epochs=EPOCHS, preset=PRESET)
        soak = Soak(server=server, cwd=tmp_path, rng=random.Random(seed))
        for _ in range(WORKERS):
            soak.start_worker()
        started = time.monotonic()
        while time.monotonic() - started < SOAK_S:
            time.sleep(soak.rng.uniform(2.0, 5.0))
            if _grid_done(server.url):
                break
            soak.act(time.monotonic() - started)
        for thaw in soak.thaws:
            thaw.join()
        if not soak.live():
            soak.start_worker()
        outputs = {}
        for worker in soak.workers:
            out, _ = worker.process.communicate(timeout=300)
            outputs[id(worker)] = out
        print(f"seed {seed}: " + "; ".join(soak.log))
        _check(soak, outputs, seed)
    finally:
        context.__exit__(None, None, None)


def _check(soak: Soak, outputs: dict[int, str], seed: int) -> None:
    url = soak.server.url
    for worker in soak.workers:
        out = outputs[id(worker)]
        expected = {"runs": 0, "termed": 143}.get(worker.fate)
        if expected is not None:
            assert worker.process.returncode == expected, f"seed {seed}: {worker.fate}\n{out}"
            assert "Traceback" not in out, f"seed {seed}:\n{out}"
    if soak.restarts:  # a worker that started while the server was down waited, and said so
        assert any("is not available (" in out for out in outputs.values()), f"seed {seed}"
    assert_grid_exactly_once(url, preset=PRESET)
    study = optuna.load_study(study_name="grid", storage=url)
    trials = study.get_trials()
    retried = {number for t in trials for number in retry_history(t)}
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert set(failed) <= retried, f"seed {seed}: failed, never queued again: " + str(
        sorted(set(failed) - retried)
    )
    for trial in trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        run = trial.user_attrs["epochs_run"]
        curves = trial.user_attrs["curves"]
        assert all(len(values) == run for values in curves.values()), (seed, trial.number)
        reported = sorted(trial.intermediate_values)
        assert reported == list(range(reported[0], run + 1)), (seed, trial.number, reported)
    print(
        f"seed {seed}: {len(soak.log)} faults, {len(soak.workers)} workers, "
        f"{len(failed)} failed trials, all queued again"
    )
