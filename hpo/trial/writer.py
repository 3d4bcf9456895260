"""A running trial's per-epoch database writes, done by a background thread in epoch order.

Each epoch a trial reports its test loss (Optuna's intermediate value) and its curves so far. A
synchronous `trial.report` costs several database round trips (the trial row locked and read, the
value written, a commit): 2 to 6 ms on PostgreSQL, a noticeable share of a 0.3 s epoch. Here the
training thread only queues the write; the thread writes every intermediate value in order, and
the newest curves snapshot at most once per `curves_interval_s` (the live figure in
optuna-dashboard, see hpo.figures.trial_figure). The pruning decision does not wait for the
database:
the objective gives the study's pruner the trial's values as it knows them (hpo.trial.objective).

Crash safety is that of the checkpoints: a worker killed mid-trial may lose its last epoch's
writes, and the trial that retries it replays the epochs from its checkpoint. On every other way
out, `close` waits for the queued values, so `study.tell` finds them all written.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from optuna.storages import BaseStorage

from hpo.record.trial_record import Curves, TrialRecord

LIVE_CURVES_INTERVAL_S = 2.0


class TrialWriter:
    def __init__(
        self,
        storage: BaseStorage,
        trial_id: int,
        curves_interval_s: float | None = LIVE_CURVES_INTERVAL_S,
    ) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.curves_interval_s = curves_interval_s  # None: no live curves
        self.curves_written = 0
        self._reports: deque[tuple[int, float]] = deque()
        self._curves: Curves | None = None
        self._next_curves = 0.0
        self._closed = False
        self._error: BaseException | None = None
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="trial-writer", daemon=True)
        self._thread.start()

    def report(self, step: int, value: float) -> None:
        """Queue `value` as the trial's intermediate value at `step`; returns at once."""
        self.check()
        with self._wake:
            self._reports.append((step, value))
            self._wake.notify_all()

    def publish(self, snapshot: Callable[[], Curves]) -> None:
        """Hand over `snapshot()`, the curves so far in lists the caller will not change.

        The newest replaces one not yet written; without live curves `snapshot` is not called.
        """
        if self.curves_interval_s is None:
            return
        curves = snapshot()
        with self._wake:
            self._curves = curves
            self._wake.notify_all()

    def close(self) -> None:
        """Write the queued values (a curves snapshot not yet written is dropped) and stop.

        Never raises, since on the way out of a failing trial that error is the one to report;
        `check` raises a write error afterwards.
        """
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join()

    def check(self) -> None:
        """Raise the error that stopped the writes, if one did."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _next_job(self) -> tuple[list[tuple[int, float]], Curves | None] | None:
        """What to write next, waiting for it; None once closed with nothing left to write."""
        with self._wake:
            while True:
                if self._reports:
                    reports = list(self._reports)
                    self._reports.clear()
                    return reports, None
                now = time.monotonic()
                if self._closed:
                    return None
                if self._curves is not None and now >= self._next_curves:
                    curves, self._curves = self._curves, None
                    return [], curves
                timeout = None if self._curves is None else self._next_curves - now
                self._wake.wait(timeout)

    def _run(self) -> None:
        try:
            while (job := self._next_job()) is not None:
                reports, curves = job
                for step, value in reports:
                    self.storage.set_trial_intermediate_value(self.trial_id, step, value)
                if curves is not None:
                    live = TrialRecord(curves=curves).to_attrs()
                    for name, stored in live.items():
                        self.storage.set_trial_user_attr(self.trial_id, name, stored)
                    self.curves_written += 1
                    self._next_curves = time.monotonic() + (self.curves_interval_s or 0.0)
        # Raised in the training thread at its next call; TakenOver (storage.resilient) when
        # another worker has failed and requeued the trial: nothing more is written.
        except BaseException as error:
            self._error = error
