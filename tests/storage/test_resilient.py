"""Outage retries (storage.resilient) without a server: transient errors made on purpose."""

from __future__ import annotations

import logging

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from hpo.workqueue import trial_writes
from hpo.workqueue.optuna_private import study_id, trial_id
from hpo.workqueue.queries import orphaned_trial_ids
from hpo.workqueue.trial_writes import set_trial_attrs
from storage import open_storage, parse_storage_url
from storage.resilient import ResilientRDBStorage
from storage.retries import with_retries


def _flaky(failures: int, result: str = "done"):
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        return result

    return call, calls


def test_a_transient_error_is_retried_until_the_call_succeeds(monkeypatch, caplog) -> None:
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    call, calls = _flaky(failures=3)
    with caplog.at_level(logging.WARNING, logger="hpo.storage"):
        assert with_retries(call, outage_s=60, name="get_trial") == "done"
    assert len(calls) == 4
    assert len(caplog.records) == 3 and "get_trial" in caplog.records[0].getMessage()


def test_an_outage_longer_than_allowed_raises_the_last_error(monkeypatch) -> None:
    slept = []
    monkeypatch.setattr("storage.retries.time.sleep", slept.append)
    call, calls = _flaky(failures=10**6)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        with_retries(call, outage_s=0, name="get_trial")
    assert len(calls) == 1 and slept == []


def test_other_errors_are_not_retried() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise KeyError("no such trial")

    with pytest.raises(KeyError):
        with_retries(call, outage_s=60, name="get_trial")
    assert len(calls) == 1


def test_a_state_change_whose_first_attempt_committed_is_not_an_error(
    tmp_path, monkeypatch
) -> None:
    """The connection dies after the commit: the retry finds the trial finished, in the state it
    was setting, and reports success instead of "trial already finished"."""
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    storage = open_storage(
        parse_storage_url(f"sqlite:///{tmp_path / 'r.db'}"), create=True, outage_s=60
    )
    assert isinstance(storage, ResilientRDBStorage)
    study = optuna.create_study(storage=storage, study_name="r")
    running = trial_id(study.ask())
    original = RDBStorage.set_trial_state_values
    attempts = []

    def commit_then_lose_the_answer(self, trial_id, state, values=None):
        attempts.append(state)
        result = original(self, trial_id, state, values)
        if len(attempts) == 1:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("connection lost"))
        return result

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", commit_then_lose_the_answer)
    assert storage.set_trial_state_values(running, TrialState.COMPLETE, [1.0]) is True
    assert len(attempts) == 2 and storage.get_trial(running).state == TrialState.COMPLETE
    # A trial that someone else finished in another state is still an error.
    other = trial_id(study.ask())
    original(storage, other, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(other, TrialState.COMPLETE, [1.0])


def test_the_projects_own_queries_wait_out_an_outage_too(tmp_path, monkeypatch) -> None:
    """The orphan check and the one-commit attribute write (hpo.workqueue) go around
    Optuna's storage calls, so they retry by themselves on a worker's storage."""
    monkeypatch.setattr("storage.retries.time.sleep", lambda _s: None)
    storage = open_storage(
        parse_storage_url(f"sqlite:///{tmp_path / 'r.db'}"), create=True, outage_s=60
    )
    study = optuna.create_study(storage=storage, study_name="r")
    trial = study.ask()  # running, and no heartbeat ever: an orphan
    connect, refused = storage.engine.connect, []

    def refuse_twice():
        if len(refused) < 2:
            refused.append(1)
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception("server restarting"))
        return connect()

    monkeypatch.setattr(storage.engine, "connect", refuse_twice)
    key_of_study = study_id(study)
    orphans = orphaned_trial_ids(storage, key_of_study, grace_s=-5)
    assert len(refused) == 2 and orphans == [trial_id(trial)]

    original, attempts = trial_writes.set_attr_in_session, []

    def lose_the_connection_once(storage, opened, **attr):
        attempts.append(attr["key"])
        if len(attempts) == 2:  # mid-transaction: the whole write is tried again
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection lost"))
        return original(storage, opened, **attr)

    monkeypatch.setattr(trial_writes, "set_attr_in_session", lose_the_connection_once)
    set_trial_attrs(trial, {"a": 1, "b": 2})
    assert attempts == ["a", "b", "a", "b"]
    assert storage.get_trial(trial_id(trial)).user_attrs == {"a": 1, "b": 2}
