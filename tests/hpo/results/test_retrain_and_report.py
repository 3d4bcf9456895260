"""hpo train on an export, and hpo report against the study it describes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch

from hpo.cli import main


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
                "12",
                "--patience",
                "4",
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
    return url, folder


def test_train_reaches_the_exported_accuracy(digits_study, capsys) -> None:
    _url, folder = digits_study
    exported = json.loads((folder / "best.json").read_text())
    capsys.readouterr()
    out = folder / "model.pt"
    assert (
        main(["train", "--params", str(folder / "best.json"), "--device", "cpu", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy ([\d.]+)%", printed).group(1)) / 100
    assert abs(accuracy - exported["test_accuracy"]) <= 0.01
    saved = torch.load(out, weights_only=False)
    assert saved["config"]["epoch"] == exported["epoch"] == len(saved["history"])
    assert saved["metrics"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert {"hpo", "torch", "optuna", "python"} <= set(saved["versions"])
    assert "classifier.1.weight" in saved["state_dict"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"learning_rate": 0.01}', "has no 'batch_size'"),
        (
            '{"learning_rate": 50, "batch_size": 64, "epoch": 3, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "batchnorm"}',
            "learning_rate 50.0 is outside",
        ),
        (
            '{"learning_rate": 0.01, "batch_size": 64, "epoch": 0, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "batchnorm"}',
            "epoch must be 1 or more",
        ),
        (
            '{"learning_rate": 0.01, "batch_size": 64, "epoch": 3, "p_dropout": 0.5, '
            '"dataset": "digits", "preset": "resnet"}',
            "invalid preset",
        ),
        ('{"learning_rate": 0.01, "batch_size": "64", "epoch": 3}', "batch_size must be"),
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
    best_table = page.split("<table id='best'>")[1].split("</table>")[0]
    assert f"<td>{exported['trial']}</td>" in best_table
    assert f"<td>{exported['epoch']}</td>" in best_table
    top_table = page.split("<table id='top'>")[1].split("</table>")[0]
    first_row = re.findall(r"<td>([^<]*)</td>", top_table)
    assert first_row[0] == str(exported["trial"])
    states = Counter(t.state.name for t in study.trials)
    for state, count in states.items():
        assert f'"{state}"' in page and str(count) in page
    assert page.count("plotly-graph-div") >= 7
