"""hpo train on an export, and hpo report against the study it describes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpo.cli import main
from hpo.errors import UsageError
from hpo.runs.retrain import load_model
from hpo.trial.data import load_data
from model.data_spec import DataSpec
from model.model_file import load_network, prepare_images
from tests.helpers import figure_traces, table_rows


@pytest.fixture(scope="module")
def digits_study(tmp_path_factory) -> tuple[str, Path]:
    """A small TPE study on digits run by a real worker, and its export."""
    folder = tmp_path_factory.mktemp("digits")
    url = f"sqlite:///{folder / 'd.db'}"
    assert (
        main(
            [
                "create",
                "--storage",
                url,
                "--study",
                "d",
                "--sampler",
                "tpe",
                "--n-trials",
                "3",
                "--dataset",
                "digits",
                "--epochs",
                "8",
                "--patience",
                "4",
                # Not the defaults: the export must carry them for hpo train to reproduce.
                "--seed",
                "3",
                "--subset",
                "800",
                "--keep-models",
                "2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "worker",
                "--storage",
                url,
                "--study",
                "d",
                "--device",
                "cpu",
                "--sampler-seed",
                "1",
                "--checkpoint-dir",
                str(folder / "ck"),
            ]
        )
        == 0
    )
    assert main(["export", "--storage", url, "--study", "d", "-o", str(folder / "best.json")]) == 0
    yaml_export = ["export", "--storage", url, "--study", "d", "--format", "yaml"]
    assert main([*yaml_export, "-o", str(folder / "best.yaml")]) == 0
    return url, folder


def test_the_export_carries_what_reproduces_the_trial(digits_study) -> None:
    url, folder = digits_study
    exported = json.loads((folder / "best.json").read_text())
    trial = optuna.load_study(study_name="d", storage=url).trials[exported["trial"]]
    assert (exported["seed"], exported["subset"], exported["epochs"]) == (3, 800, 8)
    assert exported["device"] == "cpu" and exported["speed"] == trial.user_attrs["speed"]
    curve = trial.user_attrs["curves"]["test_loss"][: exported["epoch"]]
    assert exported["test_loss_curve"] == curve and curve[-1] == exported["test_loss"]
    assert exported["chosen_by"] == "lowest test loss of 3 complete trials"


def test_train_reproduces_the_trial_from_its_yaml_export(digits_study, capsys) -> None:
    _url, folder = digits_study
    exported = json.loads((folder / "best.json").read_text())
    capsys.readouterr()
    out = folder / "model.pt"
    assert (
        main(["train", "--params", str(folder / "best.yaml"), "--device", "cpu", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert f"matches trial {exported['trial']}: the test loss of each of its" in printed, printed
    saved = load_model(out)  # weights only: no code from the file runs
    assert saved["config"]["epoch"] == exported["epoch"] == len(saved["history"])
    assert saved["config"]["seed"] == 3
    assert saved["metrics"]["test_accuracy"] == exported["test_accuracy"]
    assert saved["metrics"]["test_loss"] == pytest.approx(exported["test_loss"], rel=1e-5)
    assert {"hpo", "torch", "optuna", "python"} <= set(saved["versions"])
    assert "classifier.1.weight" in saved["state_dict"]


def test_the_winners_kept_weights_give_the_exported_accuracy(digits_study) -> None:
    url, folder = digits_study
    exported = json.loads((folder / "best.json").read_text())
    out = folder / "winner.pt"
    checkpoints = ["--checkpoint-dir", str(folder / "ck")]
    export = ["export", "--storage", url, "--study", "d"]
    assert main([*export, "--model", str(out), *checkpoints]) == 0
    # The README's lines: the file alone rebuilds the network and its input preparation.
    network, saved = load_network(out)
    data = load_data(DataSpec(dataset="digits", subset=800, seed=3))
    with torch.no_grad():
        predicted = network(prepare_images(saved, data.test_images)).argmax(dim=1)
    accuracy = (predicted == data.test_labels).sum().item() / len(data.test_labels)
    assert accuracy == exported["test_accuracy"]
    assert saved["best_epoch"] == exported["epoch"] and saved["trial"] == exported["trial"]
    assert saved["params"]["learning_rate"] == exported["learning_rate"]
    assert saved["class_names"] == [str(digit) for digit in range(10)]
    assert saved["preset"] == exported["preset"] and saved["crop"] == 8
    assert len(saved["normalization"]["mean"]) == len(saved["normalization"]["std"]) == 1
    assert {"hpo", "torch", "optuna", "python"} <= set(saved["versions"])
    # Only the two best complete trials keep their files (--keep-models 2 of 3), and each is
    # listed among its trial's artifacts for optuna-dashboard.
    study = optuna.load_study(study_name="d", storage=url)
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert len(complete) == 3
    kept = {trial.user_attrs["model_artifact"] for trial in complete[:2]}
    assert {path.name for path in (folder / "ck" / "models").iterdir()} == kept
    storage = optuna.storages.get_storage(url)
    for trial in complete[:2]:
        listed = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
        assert trial.user_attrs["model_artifact"] in {meta.artifact_id for meta in listed}


def test_export_model_of_a_trial_whose_weights_were_not_kept(digits_study, tmp_path, capsys):
    url, _folder = digits_study
    empty = ["--checkpoint-dir", str(tmp_path)]
    out = tmp_path / "m.pt"
    assert main(["export", "--storage", url, "--study", "d", "--model", str(out), *empty]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not kept" in err[0] and not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "is neither JSON nor YAML"),
        ("[1, 2]", "must hold an object of keys"),
        ('{"learning_rate": 0.01}', "has no 'batch_size'"),
        (
            '{"learning_rate": 50, "batch_size": 64, "epoch": 3, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "batchnorm"}',
            "learning_rate: a learning rate is in (0, 10], got 50.0",
        ),
        (
            '{"learning_rate": 0.01, "batch_size": 64, "epoch": 0, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "batchnorm"}',
            "epoch: a number of epochs is in [1, 100000], got 0",
        ),
        (
            '{"learning_rate": 0.01, "batch_size": 64, "epoch": 3, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "resnet"}',
            "invalid preset",
        ),
        ('{"learning_rate": 0.01, "batch_size": "64", "epoch": 3}', "batch_size must be"),
        (
            '{"learning_rate": 0.01, "batch_size": 64, "epoch": 3, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "batchnorm", "device": "gpu7"}',
            "device must be",
        ),
    ],
)
def test_bad_params_files(tmp_path: Path, capsys, content: str | None, message: str) -> None:
    path = tmp_path / "params.json"
    if content is not None:
        path.write_text(content)
    assert main(["train", "--params", str(path), "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "m.pt").exists()


def test_a_model_file_that_is_not_weights_only_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    planted = tmp_path / "planted.pt"
    torch.save({"state_dict": {}, "config": _Planted(marker)}, planted)
    with pytest.raises(UsageError, match="refused"):
        load_model(planted)
    assert not marker.exists()
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "missing.pt")


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_report_matches_the_study_and_needs_no_network(digits_study, tmp_path, capsys) -> None:
    url, folder = digits_study
    report = tmp_path / "report.html"
    assert main(["report", "--storage", url, "--study", "d", "-o", str(report)]) == 0
    page = report.read_text()
    exported = json.loads((folder / "best.json").read_text())
    study = optuna.load_study(study_name="d", storage=url)
    # No script is fetched from anywhere: plotly is inlined.
    assert not re.search(r"<script[^>]+src=", page)
    assert "plotly.js v" in page or "Plotly" in page
    # The best configuration: every exported value, as the page formats it.
    best = dict(table_rows(page, "best"))
    assert set(best) == set(exported) - {"test_loss_curve"}  # the curve is a figure
    assert best["trial"] == str(exported["trial"]) and best["epoch"] == str(exported["epoch"])
    assert best["batch_size"] == str(exported["batch_size"])
    assert float(best["learning_rate"]) == pytest.approx(exported["learning_rate"], rel=1e-3)
    assert float(best["test_loss"]) == pytest.approx(exported["test_loss"], rel=1e-3)
    assert best["test_accuracy"] == f"{100 * exported['test_accuracy']:.2f}%"
    # The fast paths by name, never a bare "[]".
    assert best["speed"] == (", ".join(exported["speed"]) or "none (plain fp32)")
    # With one study in the database, --study may be left out.
    alone = tmp_path / "alone.html"
    assert main(["report", "--storage", url, "-o", str(alone)]) == 0
    assert dict(table_rows(alone.read_text(), "best")) == best
    # The top trials: every completed trial, best first, each row that trial's numbers.
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, t.number)
    )
    rows = table_rows(page, "top")
    assert [int(row[0]) for row in rows] == [t.number for t in complete]
    assert rows[0][0] == str(exported["trial"])
    for row, trial in zip(rows, complete, strict=True):
        assert float(row[1]) == pytest.approx(trial.params["learning_rate"], rel=1e-3)
        assert row[2] == str(trial.params["batch_size"])
        assert row[4] == str(trial.user_attrs["best_epoch"])
        assert float(row[5]) == pytest.approx(trial.value, rel=1e-3)
        assert row[6] == f"{100 * trial.user_attrs['test_accuracy']:.2f}%"
        assert row[7:] == [str(trial.user_attrs["epochs_run"]), trial.user_attrs["stop_reason"]]
    # Trials by state and by stop reason: the figure's bars are the study's counts.
    states, reasons = figure_traces(page, "Trials by state and stop reason")
    assert dict(zip(states["x"], states["y"], strict=True)) == Counter(
        t.state.name for t in study.trials
    )
    ended = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert dict(zip(reasons["x"], reasons["y"], strict=True)) == Counter(
        t.user_attrs["stop_reason"] for t in ended
    )
    assert page.count("plotly-graph-div") >= 7


@pytest.mark.parametrize("name", ["trials.csv", "trials.jsonl"])
def test_every_trial_exports_to_a_table_that_pandas_reads(digits_study, name: str) -> None:
    import pandas

    url, folder = digits_study
    path = folder / name
    assert main(["export", "--storage", url, "--study", "d", "--all", "-o", str(path)]) == 0
    table = pandas.read_csv(path) if name.endswith(".csv") else pandas.read_json(path, lines=True)
    trials = optuna.load_study(study_name="d", storage=url).trials
    assert list(table["trial"]) == [trial.number for trial in trials]
    columns = ["state", "test_loss", "learning_rate", "batch_size", "p_dropout", "duration_s"]
    columns += ["best_epoch", "epochs_run", "stop_reason", "test_accuracy", "retry_of", "error"]
    assert set(columns) <= set(table.columns), list(table.columns)
    for row, trial in zip(table.to_dict("records"), trials, strict=True):
        assert row["state"] == trial.state.name
        assert row["test_loss"] == pytest.approx(trial.value)
        assert row["learning_rate"] == pytest.approx(trial.params["learning_rate"])
        assert row["batch_size"] == trial.params["batch_size"]
        assert row["best_epoch"] == trial.user_attrs["best_epoch"]
        assert row["stop_reason"] == trial.user_attrs["stop_reason"]
        assert row["test_accuracy"] == pytest.approx(trial.user_attrs["test_accuracy"])
        assert row["duration_s"] == pytest.approx(trial.duration.total_seconds())
        assert pandas.isna(row["retry_of"]) and pandas.isna(row["error"])


def test_the_table_names_a_retry_and_its_error() -> None:
    from hpo.record.config import CONFIG_ATTR, StudyConfig
    from hpo.reports.trials_table import trials_table
    from hpo.study.recovery import retry_callback
    from hpo.trial.objective import record_error

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="r", storage=storage)
    study.set_user_attr(CONFIG_ATTR, StudyConfig(sampler="tpe", n_trials=2).to_dict())
    study.enqueue_trial({"learning_rate": 0.01})
    trial = study.ask()
    trial.suggest_float("learning_rate", 0.001, 1.0, log=True)
    record_error(trial, ValueError("loss is nan"))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    retry_callback()(study, study.trials[0])
    table = trials_table(storage, "r")
    assert list(table["retry_of"].astype("object").where(table["retry_of"].notna(), None)) == [
        None,
        0,
    ]
    assert table["error"][0] == "ValueError: loss is nan" and list(table["state"]) == [
        "FAIL",
        "WAITING",
    ]


def test_export_all_to_an_unknown_format_is_one_error_line(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    create = ["create", "--storage", url, "--study", "e", "--sampler", "tpe", "--n-trials", "1"]
    assert main([*create, "--dataset", "digits"]) == 0
    capsys.readouterr()
    assert main(["export", "--storage", url, "--study", "e", "--all", "-o", "t.xlsx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name it .csv, .json or .jsonl" in err[0], err
