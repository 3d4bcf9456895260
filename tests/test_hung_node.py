"""A worker that hangs (SIGSTOP) at any moment, even inside a transaction that wrote rows, holds
the others up for about the grace period only, on PostgreSQL and on MariaDB.

Each moment is a study of its own in one database, all run at once: a worker runs until it stops
itself at that moment (tests/harness/freeze_at.py); then a second worker must finish the whole grid
while the first stays frozen. Before the server ended the frozen session (storage.session_limits),
that second worker waited on the frozen transaction's row locks for as long as the freeze lasted.
Woken afterwards, the frozen worker must leave its trial alone and exit 0, with every grid point
run exactly once and nothing left running.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy

from tests.conftest import Database
from tests.harness.preloaded import PreloadedProcess
from tests.helpers import assert_grid_exactly_once, create_small_grid, start_hpo

pytestmark = [pytest.mark.slow, pytest.mark.server]
HEARTBEAT_S, GRACE_S = 1, 3
PRESET = "momentum"  # a 16-point grid

# Where the worker freezes: after the N-th statement that matches, inside its transaction ("-":
# outside any transaction, after the N-th time a connection went back to the pool).
MOMENTS = {
    "taking a trial from the queue": ("UPDATE trials SET state", 1),
    "writing its first heartbeat": ("^(INSERT INTO|UPDATE) trial_heartbeats", 1),
    "reporting epoch 2": ("INSERT INTO trial_intermediate_values", 2),
    "writing a user attribute": ("^(INSERT INTO|UPDATE) trial_user_attributes", 3),
    "finishing its trial": ("UPDATE trials SET state", 2),
    "between transactions": ("-", 30),
}


@dataclass(kw_only=True)
class Scenario:
    study: str
    moment: str
    frozen: PreloadedProcess
    rescuer: PreloadedProcess | None = None
    held_s: float | None = None  # how long the frozen worker kept its study's trials locked

    def start_rescuer(self, url: str, cwd: Path) -> None:
        self.rescuer = start_hpo(
            *_worker_args(url, self.study, cwd), cwd=cwd, env={"OMP_NUM_THREADS": "1"}
        )

    def measure_hold(self, url: str) -> None:
        """Lock every trial row of the study, as another worker's pop or stale-trial check
        does, and time how long that waits: while the frozen worker's transaction lives, it
        holds a row (its trial's, or the trial it was taking)."""
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as connection:
                ids = list(connection.execute(_TRIAL_IDS, {"study": self.study}).scalars())
                connection.rollback()
                started = time.monotonic()
                connection.execute(_LOCK_TRIALS, {"ids": ids}).all()
                self.held_s = time.monotonic() - started
                connection.rollback()
        finally:
            engine.dispose()


_TRIAL_IDS = sqlalchemy.text(
    "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
    "WHERE s.study_name = :study"
)
# By primary key: MariaDB then locks those rows only, not the gaps that other studies' rows
# border on.
_LOCK_TRIALS = sqlalchemy.text(
    "SELECT trial_id FROM trials WHERE trial_id IN :ids FOR UPDATE"
).bindparams(sqlalchemy.bindparam("ids", expanding=True))


def _worker_args(url: str, study: str, cwd: Path) -> list[str]:
    return [
        *("worker", "--storage", url, "--study", study, "--device", "cpu"),
        *("--checkpoint-dir", str(cwd / "checkpoints"), "--poll", "0.5"),
        *("--heartbeat", str(HEARTBEAT_S), "--grace", str(GRACE_S)),
    ]


def _is_stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def _measure_holds_once_frozen(
    scenarios: list[Scenario], url: str, timeout: float = 120
) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    waiting = list(scenarios)
    probes = []
    while waiting and time.monotonic() < deadline:
        for scenario in list(waiting):
            if _is_stopped(scenario.frozen.pid):
                waiting.remove(scenario)
                probe = threading.Thread(target=scenario.measure_hold, args=(url,), daemon=True)
                probes.append(probe)
                probes[-1].start()
            elif scenario.frozen.poll() is not None:
                out = scenario.frozen.stdout.read()
                raise AssertionError(f"{scenario.moment}: exited before it froze:\n{out[-2000:]}")
        time.sleep(0.02)
    assert not waiting, f"never reached: {[s.moment for s in waiting]}"
    return probes


def _wait_for_rescuers(scenarios: list[Scenario], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    running = list(scenarios)
    while running and time.monotonic() < deadline:
        for scenario in list(running):
            assert scenario.rescuer is not None
            if scenario.rescuer.poll() is None:
                continue
            running.remove(scenario)
            out = scenario.rescuer.stdout.read()
            assert scenario.rescuer.returncode == 0, f"{scenario.moment}:\n{out[-2000:]}"
        time.sleep(0.05)
    assert not running, f"held up past {timeout} s: {[s.moment for s in running]}"


def test_a_frozen_worker_holds_the_others_up_for_about_the_grace_period(
    server_database: Database, tmp_path: Path
) -> None:
    url, server = server_database.url, server_database.kind
    scenarios = []
    for index, (moment, (pattern, occurrence)) in enumerate(MOMENTS.items()):
        study = f"grid{index}"
        create_small_grid(url, epochs=3, preset=PRESET, study=study)
        frozen = start_hpo(
            *_worker_args(url, study, tmp_path),
            env={"OMP_NUM_THREADS": "1"},
            launcher=("tests.harness.freeze_at", pattern, str(occurrence)),
        )
        scenarios.append(Scenario(study=study, moment=moment, frozen=frozen))
    try:
        for probe in _measure_holds_once_frozen(scenarios, url):
            probe.join(timeout=30)
        holds = {scenario.moment: scenario.held_s for scenario in scenarios}
        # Before the server ended frozen sessions, the rows stayed locked until SIGCONT.
        assert all(held is not None and held < 2 * GRACE_S for held in holds.values()), holds
        for scenario in scenarios:
            scenario.start_rescuer(url, tmp_path)
        _wait_for_rescuers(scenarios)
        for scenario in scenarios:
            assert _is_stopped(scenario.frozen.pid), scenario.moment  # done without it
        for scenario in scenarios:
            os.kill(scenario.frozen.pid, signal.SIGCONT)
        for scenario in scenarios:
            out, _ = scenario.frozen.communicate(timeout=60)
            assert scenario.frozen.returncode == 0, f"{scenario.moment} (woken):\n{out[-2000:]}"
            assert "Traceback" not in out, out
            assert_grid_exactly_once(url, preset=PRESET, study_name=scenario.study)
    finally:
        for scenario in scenarios:
            for process in (scenario.frozen, scenario.rescuer):
                if process is not None and process.poll() is None:
                    os.kill(process.pid, signal.SIGCONT)
                    process.kill()
                    process.wait()
    for scenario in scenarios:
        print(
            f"{server}: frozen while {scenario.moment}: its trials' rows stayed locked "
            f"{scenario.held_s:.1f} s (grace period {GRACE_S} s)"
        )
