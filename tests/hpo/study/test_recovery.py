"""Recovery on SQLite, in one process: dead workers' trials, failed trials, retries and lineage.

The same code runs against PostgreSQL and MariaDB with real killed processes in
tests/test_reliability.py; here each path is reached directly and fast.
"""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hpo.record.config import StudyConfig
from hpo.record.lineage import is_retry, lineage
from hpo.study.queue import WorkQueueStudy, create_study, open_study
from hpo.study.recovery import (
    MAX_RETRIES,
    queued_again,
    requeue,
    retry_callback,
    retry_dead_trials,
    stale_trial_numbers,
)
from hpo.workqueue.optuna_private import trial_id
from hpo.workqueue.queries import queued_params
from storage import open_storage, parse_storage_url


@pytest.fixture
def grid(tmp_path):
    """A 16-point grid study opened as a worker opens it (heartbeats on)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    config = StudyConfig(dataset="synthetic", preset="augment")  # no dropout: 16 points
    create_study(open_storage(parse_storage_url(url), create=True), "g", config)
    storage = open_storage(
        parse_storage_url(url),
        heartbeat_interval=1,
        grace_period=2,
        stale_trial_callback=retry_callback(),
    )
    return open_study(storage, "g"), storage


def _seen(study: WorkQueueStudy) -> optuna.Study:
    """The study as a reader of the database sees it: a worker's own study does not list WAITING
    trials (QueueTrialCache)."""
    return optuna.load_study(study_name=study.study_name, storage=study.rdb)


def _waiting(study: WorkQueueStudy) -> list[optuna.trial.FrozenTrial]:
    return _seen(study).get_trials(states=(TrialState.WAITING,))


def test_a_trial_that_never_sent_a_heartbeat_is_failed_and_queued_again(grid) -> None:
    study, storage = grid
    orphan = study.ask()  # `ask` records a first heartbeat; remove it, as a kill before it would
    with storage.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM trial_heartbeats")
    retry_dead_trials(study, storage, retry=retry_callback())
    assert _seen(study).trials[orphan.number].state == TrialState.RUNNING  # not yet past the grace
    with storage.engine.begin() as connection:  # as if it was taken an hour ago
        connection.exec_driver_sql("UPDATE trials SET datetime_start = '2000-01-01 00:00:00'")
    assert stale_trial_numbers(study, storage) == [orphan.number]
    retry_dead_trials(study, storage, retry=retry_callback())
    assert _seen(study).trials[orphan.number].state == TrialState.FAIL
    retry = _seen(study).trials[-1]
    assert retry.state == TrialState.WAITING and is_retry(retry)
    assert lineage(retry) == orphan.number
    assert queued_params(retry) == queued_params(_seen(study).trials[orphan.number])
    assert len(_waiting(study)) == 16  # 15 untouched + the retry


def test_a_stale_heartbeat_is_failed_and_queued_again(grid) -> None:
    study, storage = grid
    taken = study.ask()
    storage.record_heartbeat(trial_id(taken))
    with storage.engine.begin() as connection:  # as if the last heartbeat was an hour ago
        connection.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'")
    assert stale_trial_numbers(study, storage) == [taken.number]
    retry_dead_trials(study, storage, retry=retry_callback())
    assert _seen(study).trials[taken.number].state == TrialState.FAIL
    assert lineage(_seen(study).trials[-1]) == taken.number


def test_requeue_fails_a_running_trial_and_queues_it_once(grid) -> None:
    study, _ = grid
    trial = study.ask()
    requeue(study, trial.number)
    requeue(study, trial.number)  # repeated, as after a lost acknowledgement
    assert _seen(study).trials[trial.number].state == TrialState.FAIL
    retries = [t for t in _seen(study).trials if is_retry(t)]
    assert len(retries) == 1 and queued_again(study, trial.number)
    requeue(study, None)  # no trial: nothing happens
    assert len(_seen(study).trials) == 17


def test_a_retry_of_a_retry_keeps_the_first_trials_lineage_up_to_the_limit(grid) -> None:
    study, _ = grid
    first = study.ask()
    number = first.number
    for _ in range(MAX_RETRIES + 1):
        requeue(study, number)
        retries = [t for t in _seen(study).trials if is_retry(t) and t.state == TrialState.WAITING]
        if not retries:
            break
        # Take that retry next: pop trials until it comes up, handing the others back.
        while (trial := study.ask()).number != retries[0].number:
            study.tell(trial, 1.0)
        number = trial.number
        assert lineage(_seen(study).trials[number]) == first.number
    chain = [t for t in _seen(study).trials if lineage(t) == first.number]
    assert len(chain) == MAX_RETRIES + 1  # the trial and its retries; then it stays FAIL
    assert all(t.state == TrialState.FAIL for t in chain)


def test_a_trial_finished_by_another_worker_is_left_alone(grid) -> None:
    study, _ = grid
    trial = study.ask()
    study.tell(trial, 0.5)
    requeue(study, trial.number)
    assert _seen(study).trials[trial.number].state == TrialState.COMPLETE
    assert not any(is_retry(t) for t in _seen(study).trials)


def test_a_worker_does_not_leave_while_a_dead_trials_retry_is_being_queued(
    tmp_path, monkeypatch
) -> None:
    """The stale-trial watch fails a dead worker's trial and then queues its retry. A worker
    whose queue is empty must not look, find nothing running or queued between the two, and
    leave: the retry would wait for a worker that is gone. Queueing is slowed here past the
    worker's poll, which made it leave every time before its last look waited for the watch."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from hpo.study.worker import WorkerOptions, run_worker

    url = f"sqlite:///{tmp_path / 'w.db'}"
    config = StudyConfig(sampler="tpe", n_trials=1, dataset="synthetic", subset=16, epochs=1)
    create_study(open_storage(parse_storage_url(url), create=True), "w", config)
    dead = open_study(open_storage(parse_storage_url(url), heartbeat_interval=1), "w")
    dead.ask()  # its heartbeat stops now: the trial of a worker that died
    queue_again = RetryHeartbeatStaleTrialCallback.__call__

    def slowly(self, study, trial) -> None:
        time.sleep(3)
        queue_again(self, study, trial)

    monkeypatch.setattr(RetryHeartbeatStaleTrialCallback, "__call__", slowly)
    options = WorkerOptions(
        storage_url=parse_storage_url(url),
        study_name="w",
        device="cpu",
        checkpoint_dir=str(tmp_path / "ck"),
        heartbeat_s=1,
        grace_s=2,
        poll_s=0.5,
    )
    summary = run_worker(options, say=lambda line: None)
    assert summary.states["COMPLETE"] == 1
    states = [t.state for t in optuna.load_study(study_name="w", storage=url).trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
