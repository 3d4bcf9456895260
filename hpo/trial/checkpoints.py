"""Per-epoch checkpoints of running trials, so that a trial interrupted anywhere resumes.

A trial's checkpoint is keyed by its lineage (hpo.record.lineage): the number of the first
trial of a chain of retries, so the trial that retries a dead one finds the dead one's checkpoint.
Files are written whole or not at all (temporary file, then rename), in
a folder every worker of the study can reach (a shared volume for many machines).

Writing a checkpoint (about 10 MB for this network) takes longer than an epoch's database
bookkeeping, so `AsyncCheckpoints` writes in a background thread: the training loop only pays for
copying the state to host memory. A crash can then lose the write in flight, i.e. at most one
completed epoch; a hand-back (SIGTERM) and the end of a trial wait for it. A checkpoint that
cannot be written (a full disk, no permission) is a warning, once, naming the file, its folder
and the reason: the trial goes on, since losing hours of training to a checkpoint is worse than
resuming from an older one.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from hpo.errors import cannot_write
from model.atomic_file import save_torch_atomically
from model.metrics import EpochMetrics
from model.train import TrainState

WRITER_IDLE_CHECK_S = 0.2  # how often an idle writer thread checks whether the program is ending


class CheckpointStore:
    def __init__(self, root: Path | str, say: Callable[[str], None] = print) -> None:
        self.root = Path(root)
        self.say = say  # told when a checkpoint is refused

    def path(self, study: str, key: int) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", study)
        return self.root / safe / f"trial-{key}.pt"

    def save(self, study: str, key: int, state: TrainState) -> None:
        path = self.path(study, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Shallow: the state is a host copy already; `dataclasses.asdict` would deep-copy every
        # tensor once more.
        payload = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
        payload["history"] = [m.as_dict() for m in state.history]
        save_torch_atomically(path, payload)

    def load(self, study: str, key: int) -> TrainState | None:
        """The checkpoint, or None when there is none or it cannot be read (start over).

        Read with `weights_only=True`: tensors, numbers, strings and containers only, so a file
        planted in a shared checkpoint folder can run no code in the worker that reads it. A
        file that fails to load (foreign, torn or malicious) is refused with one line.
        """
        path = self.path(study, key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            payload["history"] = [EpochMetrics(**m) for m in payload["history"]]
            return TrainState(**payload)
        except Exception as error:  # starting over is always correct
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            self.say(
                f"checkpoint {path} refused ({type(error).__name__}: {reason}); "
                "the trial starts from epoch 1"
            )
            return None

    def remove(self, study: str, key: int) -> None:
        # The study's folder stays: removing it when it looks empty races with another worker
        # that has just made it and is about to write its first checkpoint there.
        self.path(study, key).unlink(missing_ok=True)


class AsyncCheckpoints:
    """`CheckpointStore` whose writes run in a background thread, one at a time.

    Two host copies of the state alternate: the training thread copies the new state into the
    one that is not being written, so a checkpoint costs the training loop one memcpy. The writer
    thread lives as long as the program and waits for work: starting a thread per write cost 2 ms
    of the training loop's time on a slow 2-core machine (BENCHMARKS.md, benchmark 4).
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self._error: BaseException | None = None
        self._failing: str | None = None  # why the last write failed, said once until one works
        self._spare: TrainState | None = None  # the copy not being written, reused next time
        self._writing: TrainState | None = None
        self._changed = threading.Condition()
        self._job: tuple[str, int, TrainState] | None = None  # handed over, not yet taken
        self._busy = False  # the writer is writing a job
        self._writer: threading.Thread | None = None

    def load(self, study: str, key: int) -> TrainState | None:
        self.flush()
        return self.store.load(study, key)

    def save(
        self, study: str, key: int, snapshot: Callable[[TrainState | None], TrainState]
    ) -> None:
        """Write `snapshot(buffer)` (a state copied into `buffer` when given) in the background."""
        self.flush()  # one write at a time; it has had a whole epoch to finish
        state = snapshot(self._spare)
        self._spare, self._writing = self._writing, state
        with self._changed:
            self._job = (study, key, state)
            self._changed.notify_all()
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="checkpoint-writer")
            self._writer.start()

    def flush(self) -> None:
        """Wait until the state last handed to `save` is on disk."""
        with self._changed:
            while self._job is not None or self._busy:
                self._changed.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def remove(self, study: str, key: int) -> None:
        self.flush()  # or a late write would bring the file back
        self.store.remove(study, key)

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._job is None:
                    # Not a daemon, so a write in flight is finished at exit; once the main
                    # thread has ended and nothing is left to write, let the program exit.
                    if not threading.main_thread().is_alive():
                        return
                    self._changed.wait(timeout=WRITER_IDLE_CHECK_S)
                study, key, state = self._job
                self._job, self._busy = None, True
            try:
                self.store.save(study, key, state)
                if self._failing is not None:
                    self.store.say(f"checkpoints written again in {self.store.root}")
                self._failing = None
            except OSError as error:
                # No room, no permission, a read-only file system: the trial goes on without
                # checkpoints rather than lose its training; an interruption then costs the
                # epochs since the last checkpoint that was written. Said once, not per epoch.
                why = cannot_write(self.store.path(study, key), error)
                if why != self._failing:
                    self.store.say(
                        f"warning: checkpoint not written: {why}; the trial goes on without "
                        "checkpoints (an interruption resumes it from its last one written)"
                    )
                self._failing = why
            except Exception as error:  # raised in the training thread at its next call
                self._error = error
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
