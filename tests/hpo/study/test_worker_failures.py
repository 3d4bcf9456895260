"""Failures you can see: a trial that raises keeps its error, `hpo status` says why and what
became of it, and a worker whose trials keep failing stops with a non-zero status naming it."""

from __future__ import annotations

import optuna

from hpo.cli import main
from hpo.record.trial_record import TrialRecord
from hpo.study.recovery import MAX_RETRIES
from hpo.trial.objective import Objective


def test_failed_trials_keep_their_error_and_status_lists_them(
    tmp_path, monkeypatch, capsys
) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    create = ["create", "--storage", url, "--study", "f", "--sampler", "tpe", "--n-trials", "1"]
    assert main([*create, "--dataset", "synthetic", "--subset", "16", "--epochs", "1"]) == 0

    def broken(self, trial):
        raise ValueError(f"no memory for trial {trial.number}")

    monkeypatch.setattr(Objective, "_run", broken)
    worker = ["worker", "--storage", url, "--study", "f", "--device", "cpu"]
    assert main([*worker, "--checkpoint-dir", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: worker stopped: 3 trials failed in a row, last: ValueError")
    trials = optuna.load_study(study_name="f", storage=url).trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 3
    error = TrialRecord.from_trial(failed[0]).error
    assert error is not None
    assert error.type == "ValueError" and error.message == "no memory for trial 0"
    assert any("in broken" in line for line in error.traceback)

    # One more worker runs the last retry (one failure, not three in a row: it finishes the
    # queue and exits 0); the trial then stays FAIL.
    assert main([*worker, "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    capsys.readouterr()
    assert main(["status", "--storage", url, "--study", "f"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("failed:")]
    assert lines[0] == (
        f"failed: trial {MAX_RETRIES}, ValueError: no memory for trial {MAX_RETRIES}; "
        f"gave up after {MAX_RETRIES + 1} attempts (at most {MAX_RETRIES} retries)"
    )
    assert lines[-1] == "failed: trial 0, ValueError: no memory for trial 0; retried as trial 1"
    assert len(lines) == MAX_RETRIES + 1
