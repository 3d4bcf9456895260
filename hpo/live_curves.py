"""A running trial's curves written to its user attrs as epochs finish, off the training thread.

optuna-dashboard (and `hpo report`) read a trial's curves from its user attrs. Writing them
after every epoch in the training loop would add a database round trip to each epoch, so a
background thread writes the newest snapshot, at most once per `interval_s`; snapshots that
arrive meanwhile replace each other. The trial's final curves are written by the objective when
the trial ends, so a snapshot lost here only delays the live figure.
"""

from __future__ import annotations

import sys
import threading

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage

LIVE_CURVES_INTERVAL_S = 2.0

Curves = dict[str, list[float | None]]


class LiveCurves:
    def __init__(
        self, storage: BaseStorage, trial_id: int, interval_s: float = LIVE_CURVES_INTERVAL_S
    ) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval_s = interval_s
        self.written = 0  # snapshots written so far
        self._pending: Curves | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="live-curves", daemon=True)
        self._thread.start()

    def publish(self, curves: Curves) -> None:
        """Hand over the curves so far; returns at once."""
        snapshot = {key: list(values) for key, values in curves.items()}
        with self._wake:
            self._pending = snapshot
            self._wake.notify()

    def close(self) -> None:
        """Stop; a snapshot not yet written is dropped (the trial's end writes the final one)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or self._pending is not None)
                if self._closed:
                    return
                snapshot, self._pending = self._pending, None
            try:
                self.storage.set_trial_user_attr(self.trial_id, "curves", snapshot)
                self.written += 1
            except UpdateFinishedTrialError:
                return  # another worker took the trial over: its curves are not ours to write
            except Exception as error:  # the figure is a view; training must not stop for it
                reason = (str(error).splitlines() or [type(error).__name__])[0]
                print(f"warning: live curves not written: {reason}", file=sys.stderr)
                return
            with self._wake:
                self._wake.wait_for(lambda: self._closed, timeout=self.interval_s)
