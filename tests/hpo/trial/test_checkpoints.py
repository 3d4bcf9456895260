"""The background checkpoint writer: one thread, errors surfaced, no write lost at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
from model.train import TrainState


def _state(epoch_marker: int) -> TrainState:
    import torch

    return TrainState(
        history=[],
        network={"w": torch.full((4,), float(epoch_marker))},
        optimizer={},
        scheduler=None,
        cpu_rng=torch.zeros(1),
        data_rng=torch.zeros(1),
    )


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "checkpoint-writer"]


def test_one_writer_thread_writes_every_save_in_turn(tmp_path: Path) -> None:
    before = set(_writers())
    checkpoints = AsyncCheckpoints(CheckpointStore(tmp_path))
    seen: set[threading.Thread] = set()
    for marker in range(1, 6):
        checkpoints.save("s", 0, lambda _buffer, m=marker: _state(m))
        seen.update(set(_writers()) - before)
    checkpoints.flush()
    assert len(seen) == 1  # started once, then reused
    assert float(checkpoints.load("s", 0).network["w"][0]) == 5.0


class FailingStore(CheckpointStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fail = True

    def save(self, study: str, key: int, state: TrainState) -> None:
        if self.fail:  # a fault of the program, not of the disk (test_full_disk.py: the disk's)
            raise RuntimeError("cannot serialize")
        super().save(study, key, state)


def test_a_failed_write_is_raised_in_the_training_thread_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    store = FailingStore(tmp_path)
    checkpoints = AsyncCheckpoints(store)
    checkpoints.save("s", 0, lambda _buffer: _state(1))
    with pytest.raises(RuntimeError, match="cannot serialize"):
        checkpoints.flush()
    store.fail = False
    checkpoints.save("s", 0, lambda _buffer: _state(2))
    checkpoints.flush()
    assert float(store.load("s", 0).network["w"][0]) == 2.0


def test_a_write_in_flight_is_finished_when_the_program_ends(tmp_path: Path) -> None:
    # The main thread ends right after handing over a slow write: the program waits for it,
    # then exits without waiting any longer than the writer's idle check. Both times are read
    # from one clock in the child: when its write landed, and at exit (atexit handlers run after
    # the interpreter has joined the non-daemon threads).
    script = textwrap.dedent(
        f"""
        import atexit, time, torch
        from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
        from model.train import TrainState

        class SlowStore(CheckpointStore):
            def save(self, study, key, state):
                time.sleep(1.0)
                super().save(study, key, state)
                print("written", time.monotonic() - main_ended, flush=True)

        state = TrainState(
            history=[],
            network={{"w": torch.ones(3)}},
            optimizer={{}},
            scheduler=None,
            cpu_rng=torch.zeros(1),
            data_rng=torch.zeros(1),
        )
        AsyncCheckpoints(SlowStore({str(tmp_path)!r})).save("s", 7, lambda _buffer: state)
        main_ended = time.monotonic()
        atexit.register(lambda: print("exit", time.monotonic() - main_ended, flush=True))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert CheckpointStore(tmp_path).load("s", 7) is not None
    assert not list(tmp_path.rglob("*.partial"))
    times = {
        name: float(value) for name, value in (line.split() for line in done.stdout.splitlines())
    }
    # The program waited for the write (and not for ever: the run's timeout). How long it took
    # is bench/'s business, not a test's.
    assert times["written"] <= times["exit"]
