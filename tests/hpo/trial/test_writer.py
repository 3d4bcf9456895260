"""The background writer of a trial's per-epoch values: all written, in order, errors surfaced."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from hpo.trial.writer import TrialWriter
from hpo.workqueue.optuna_private import trial_id
from storage import open_storage, parse_storage_url
from storage.errors import TakenOver


def _running_trial(tmp_path: Path) -> tuple[optuna.storages.BaseStorage, optuna.Study, int]:
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'w.db'}"), create=True)
    study = optuna.create_study(storage=storage, study_name="w")
    return storage, study, trial_id(study.ask())


def test_every_report_is_written_in_order_by_close(tmp_path: Path) -> None:
    storage, _, trial_id = _running_trial(tmp_path)
    writer = TrialWriter(storage, trial_id, curves_interval_s=None)
    for step in range(1, 41):
        writer.report(step, 1.0 / step)
    writer.close()  # waits for what is queued
    values = storage.get_trial(trial_id).intermediate_values
    assert values == {step: 1.0 / step for step in range(1, 41)}


def test_curves_are_throttled_and_the_newest_kept(tmp_path: Path) -> None:
    storage, _, trial_id = _running_trial(tmp_path)
    writer = TrialWriter(storage, trial_id, curves_interval_s=60.0)
    writer.publish(lambda: {"test_loss": [1.0]})
    deadline = time.monotonic() + 10
    while writer.curves_written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for epoch in range(2, 6):  # within the interval: held, each replacing the one before
        writer.publish(lambda epoch=epoch: {"test_loss": [1.0] * epoch})
        writer.report(epoch, 1.0)  # reports are not held back by the curves' interval
    writer.close()
    assert writer.curves_written == 1
    trial = storage.get_trial(trial_id)
    assert trial.user_attrs["curves"] == {"test_loss": [1.0]}
    assert sorted(trial.intermediate_values) == [2, 3, 4, 5]


def test_a_trial_finished_by_another_worker_stops_the_writes_quietly(tmp_path, capsys) -> None:
    storage, study, key = _running_trial(tmp_path)
    study.tell(study.trials[0].number, state=optuna.trial.TrialState.FAIL)  # e.g. stale
    writer = TrialWriter(storage, key, curves_interval_s=0.0)
    writer.report(1, 1.0)
    writer.close()
    with pytest.raises(TakenOver):  # once, in the training thread, which then stops the trial
        writer.check()
    writer.check()
    assert capsys.readouterr().err == ""


class _BrokenStorage:
    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        raise ConnectionError("database went away")


def test_a_write_error_is_raised_in_the_training_thread() -> None:
    writer = TrialWriter(_BrokenStorage(), 1, curves_interval_s=None)
    writer.report(1, 1.0)
    writer.close()
    with pytest.raises(ConnectionError, match="database went away"):
        writer.check()
    writer.report(2, 1.0)  # the error was raised once; the writes stay stopped
    writer.close()
    writer.check()
