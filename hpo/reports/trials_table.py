"""Every trial of a study as one table row (`hpo export --all`): for pandas, a spreadsheet, or a
comparison of one study with another, without code against Optuna's tables. Imported by that
command only: pandas takes a moment to load."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas

from hpo.errors import UsageError
from hpo.record.lineage import retried_trial_number
from hpo.record.trial_record import TrialRecord
from hpo.reports.export import write_text
from hpo.study.queue import load_config

TABLE_SUFFIXES = {".csv": "csv", ".json": "jsonl", ".jsonl": "jsonl"}


def trials_table(storage: optuna.storages.BaseStorage, study_name: str) -> pandas.DataFrame:
    """One row per trial, from Optuna's `trials_dataframe`, with plain column names: trial,
    state, test_loss (the trial's value: its lowest test loss; with a validation split, val_loss
    and then the test loss of the same epoch), the parameters, start, end and
    duration in seconds, then best epoch, epochs run, stop reason, test accuracy, device, the trial
    it retries (empty if none) and its error (type: message) if it raised."""
    config = load_config(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "params", "datetime_start", "datetime_complete")
    )
    if frame.empty:
        raise UsageError(f"study {study_name!r} has no trials")
    value_column = "val_loss" if config.validation else "test_loss"
    frame = frame.rename(
        columns={"number": "trial", "value": value_column}
        | {c: c.removeprefix("params_") for c in frame.columns if c.startswith("params_")}
    )
    for column in ("datetime_start", "datetime_complete"):  # all empty while none has run
        frame[column] = pandas.to_datetime(frame[column])
    frame["duration_s"] = (frame["datetime_complete"] - frame["datetime_start"]).dt.total_seconds()
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.from_trial(trial) for trial in trials]
    if config.validation:  # the values are validation losses; the test loss is in the record
        frame.insert(3, "test_loss", [record.test_loss for record in records])
    columns = [record.table_columns() for record in records]
    for column in columns[0]:
        frame[column] = [row[column] for row in columns]
    if config.confirms:  # a confirmation study: the trial each one retrains, and its seed
        frame["confirms_trial"] = [record.confirms_trial for record in records]
        frame["seed"] = [record.seed for record in records]
    frame["retry_of"] = pandas.array(  # integers with blanks
        [retried_trial_number(trial) for trial in trials], dtype="Int64"
    )
    frame["error"] = [record.error.line() if record.error else None for record in records]
    return frame


def table_format(path: Path | None) -> str:
    """csv or jsonl, by the file's suffix (stdout: csv)."""
    if path is None:
        return "csv"
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"cannot tell the table format of {path}: name it .csv, .json or .jsonl")
    return kind


def write_table(frame: pandas.DataFrame, path: Path | None) -> str | None:
    """CSV, or JSON lines for `.json`/`.jsonl`; to `path`, or returned (CSV) for stdout."""
    kind = table_format(path)
    if path is None:
        return frame.to_csv(index=False)
    if kind == "csv":
        text = frame.to_csv(index=False)
    else:
        text = frame.to_json(orient="records", lines=True, date_format="iso") + "\n"
    write_text(path, text)
    return None
