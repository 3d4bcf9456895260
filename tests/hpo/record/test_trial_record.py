"""The trial record: the stored names stay those that the dashboard and existing studies read,
what is written is what is read back, and a run's record comes from its one history."""

from __future__ import annotations

import math

import optuna
import pytest

from hpo.record.trial_record import (
    CURVE_KEYS,
    SHOWN_AT_BEST,
    TrialError,
    TrialRecord,
    curves_of,
)
from model.metrics import EpochHistory, EpochMetrics


def _epoch(epoch: int, test_loss: float, val_loss: float | None = None) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        train_loss=2.0 / epoch,
        train_accuracy=0.1 * epoch,
        test_loss=test_loss,
        test_accuracy=0.05 * epoch,
        test_top5=0.5,
        learning_rate=0.01,
        seconds=0.25,
        val_loss=val_loss,
        val_accuracy=None if val_loss is None else 0.2,
    )


def _stored(record: TrialRecord, value: float | None = None) -> optuna.trial.FrozenTrial:
    study = optuna.create_study()
    trial = study.ask()
    for name, stored in record.to_attrs().items():
        trial.set_user_attr(name, stored)
    if value is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)
    return study.trials[0]


def test_a_runs_record_is_stored_under_the_contracts_names() -> None:
    history = EpochHistory.of([_epoch(1, 1.0), _epoch(2, 0.5), _epoch(3, 0.7)])
    attrs = TrialRecord.of_run(history, "patience").to_attrs()
    # DESIGN.md's contract, and what earlier versions wrote: existing studies read the same.
    assert set(attrs) == {
        "epochs_run",
        "stop_reason",
        "best_epoch",
        "test_accuracy",
        "test_top5",
        "train_loss",
        "train_accuracy",
        "curves",
    }
    assert (attrs["epochs_run"], attrs["best_epoch"], attrs["stop_reason"]) == (3, 2, "patience")
    assert attrs["test_accuracy"] == 0.1 and attrs["train_loss"] == 1.0
    assert set(attrs["curves"]) == set(CURVE_KEYS)
    assert attrs["curves"]["test_loss"] == [1.0, 0.5, 0.7]


def test_what_is_written_is_what_is_read_back() -> None:
    history = EpochHistory.of([_epoch(1, 1.0, val_loss=0.9), _epoch(2, 0.8, val_loss=0.95)])
    written = TrialRecord.of_run(history, "max_epochs")
    read = TrialRecord.from_trial(_stored(written, value=0.9))
    assert read == TrialRecord(**{**written.__dict__, "value": 0.9})
    # Chosen on the validation split: the value is the validation loss, the test loss stored.
    assert read.validated and read.test_loss == 1.0 and read.test_loss_at_best == 1.0
    assert read.at_best_epoch("val_loss") == 0.9 and read.seconds == 0.5


def test_a_record_in_parts_writes_only_its_parts() -> None:
    started = TrialRecord(device="cpu", speed=(), resumed_from_epoch=4)
    assert started.to_attrs() == {"device": "cpu", "speed": [], "resumed_from_epoch": 4}
    assert TrialRecord(confirms_trial=3, seed=7).to_attrs() == {"confirms_trial": 3, "seed": 7}
    assert TrialRecord().to_attrs() == {}


def test_an_error_is_stored_with_its_last_traceback_lines_and_read_back_typed() -> None:
    try:
        raise ValueError("loss is nan")
    except ValueError as raised:
        error = TrialError.of(raised)
    read = TrialRecord.from_trial(_stored(TrialRecord(error=error))).error
    assert read == error and read.line() == "ValueError: loss is nan"
    assert any("raise ValueError" in line for line in read.traceback)


def test_a_trial_with_nothing_stored_reads_as_an_empty_record() -> None:
    read = TrialRecord.from_trial(_stored(TrialRecord()))
    assert read.best_epoch is None and read.curves == {} and read.error is None
    assert read.curve("test_loss") == [] and read.seconds == 0.0 and not read.validated


def test_a_diverged_epoch_is_stored_as_null_and_never_the_best() -> None:
    history = EpochHistory.of([_epoch(1, 1.0), _epoch(2, math.nan)])
    record = TrialRecord.of_run(history, "diverged")
    assert record.best_epoch == 1 and record.curves["test_loss"] == [1.0, None]
    assert curves_of([]) == {key: [] for key in CURVE_KEYS}


@pytest.mark.parametrize("shown", SHOWN_AT_BEST)
def test_the_export_and_the_table_show_the_records_best_epoch_metrics(shown: str) -> None:
    record = TrialRecord.of_run(EpochHistory.of([_epoch(1, 1.0)]), "max_epochs")
    assert record.shown_at_best()[shown] == getattr(record, shown) is not None
    assert shown in record.table_columns()
