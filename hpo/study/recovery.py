"""Recovery: a trial whose worker failed, died or was stopped is queued again, once.

Every way a trial can be lost comes here:
- a worker killed mid-trial (SIGKILL, power loss) stops sending heartbeats; after the grace period
  any worker fails the trial and queues it again (`retry_dead_trials`). A worker killed before its
  first heartbeat leaves a trial with no heartbeat at all, found by the same call;
- a trial that raised, or that SIGTERM interrupted, is failed and queued again by its own worker
  (`requeue`);
- a retry keeps the lineage of the trial it retries (hpo.record.lineage), so that it resumes from
  that trial's checkpoint.
A failed trial is queued again at most MAX_RETRIES times. Queueing again is safe to repeat: a retry
that exists already is not made twice, so the call can wait out a database outage
(storage.resilient) even when an attempt committed before its connection was cut.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from hpo.record.trial_record import handed_back_record
from hpo.workqueue.optuna_private import (
    database,
    retried,
    stale_trial_ids,
    study_id,
    study_storage,
    trial_id,
)
from hpo.workqueue.queries import orphaned_trial_ids, retry_histories, trial_by_number
from hpo.workqueue.trial_writes import write_trial_attrs
from storage.errors import TakenOver

_log = logging.getLogger("hpo.worker")
DEFAULT_GRACE_S = 60  # Optuna's own grace period when a storage is given none
MAX_RETRIES = 3  # a trial that fails this often is left FAIL instead of queued again

RetryCallback = Callable[[optuna.Study, FrozenTrial], None]


def retry_callback() -> RetryCallback:
    """Optuna's retry (queue a failed trial again, at most MAX_RETRIES times), made safe to
    repeat, and so waiting out a database outage as long as the study's storage waits (as one
    retried call: the storage calls inside it do not wait on their own)."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def queue_again(study: optuna.Study, trial: FrozenTrial) -> None:
        def attempt() -> None:
            if not queued_again(study, trial.number):
                retry(study, trial)

        storage = database(study_storage(study))
        if storage is None:
            attempt()
        else:
            retried(storage, attempt, "queue a failed trial again")

    return queue_again


def queued_again(study: optuna.Study, number: int | None) -> bool:
    """Whether a retry of trial `number` exists already (made by whoever failed it)."""
    return number is not None and any(number in history for history in retry_histories(study))


def requeue(study: optuna.Study, number: int | None, handed_back_on: str | None = None) -> None:
    """Fail trial `number` if it still runs, and queue its parameters again, so that the grid
    point or budget slot is not lost. `handed_back_on` (SIGTERM, Ctrl-C) records that its worker
    handed it back when stopped, which `hpo status` tells apart from a crash."""
    if number is None:
        return
    trial = trial_by_number(study, number)
    if trial.state == TrialState.RUNNING:
        # Interrupted before Optuna recorded the failure.
        try:
            if handed_back_on is not None:
                write_trial_attrs(
                    study_storage(study),
                    trial_id(trial),
                    handed_back_record(handed_back_on).to_attrs(),
                )
            study.tell(number, state=TrialState.FAIL)
        except TakenOver:
            return  # another worker finished it (and queued it again) meanwhile
        trial = trial_by_number(study, number)
    if trial.state == TrialState.FAIL:
        retry_callback()(study, trial)


def retry_dead_trials(study: optuna.Study, storage: RDBStorage, retry: RetryCallback) -> None:
    """Fail and queue again the trials of dead workers: stale heartbeats (Optuna's check, which
    calls the storage's stale-trial callback) and trials that never had one within the storage's
    grace period."""
    fail_stale_trials(study)
    for orphan in _orphaned_trial_ids(study, storage):
        try:
            if storage.set_trial_state_values(orphan, state=TrialState.FAIL):
                retry(study, storage.get_trial(orphan))
        except TakenOver:
            pass  # another worker got there first


def stale_trial_numbers(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """Running trials whose heartbeat is older than the storage's grace period, or that never
    had one."""
    running = {
        trial_id(t): t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    if not running:
        return []
    stale_ids = set(_orphaned_trial_ids(study, storage))
    if storage.get_heartbeat_interval() is not None:
        # Optuna's own check, against the database server's clock.
        stale_ids |= set(stale_trial_ids(storage, study_id(study)))
    return sorted(running[tid] for tid in stale_ids if tid in running)


def _orphaned_trial_ids(study: optuna.Study, storage: RDBStorage) -> list[int]:
    grace_s = storage.grace_period or DEFAULT_GRACE_S
    return orphaned_trial_ids(storage, study_id(study), grace_s)


class StaleTrialWatch:
    """Looks for dead workers' trials every `interval_s` seconds in a thread of its own, while
    this worker trains: otherwise a dead node's trial waits until some worker finishes its own
    trial, minutes past the grace period with CIFAR-length trials and every worker busy. Each
    look is two indexed queries (Optuna's stale heartbeats, and trials that never had one).
    An error in a look (the database away) is left to the next one; the worker's own calls
    report outages."""

    def __init__(self, check: Callable[[], None], interval_s: float) -> None:
        self._check = check
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stale-trial-watch", daemon=True)

    def __enter__(self) -> StaleTrialWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # A look in progress ends within the storage's bounds (socket limits, outage wait); the
        # thread is a daemon, so a worker never waits past this for it.
        self._thread.join(timeout=self._interval_s)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._check()
            except Exception as error:  # any failure: the next look tries again
                _log.debug("stale-trial look failed: %s", error)
