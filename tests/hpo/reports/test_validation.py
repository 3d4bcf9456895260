"""`hpo create --validation N`: the best epoch and the winner are chosen on held-out images, and
the test set is measured for the record only; the export, the table and the report say so."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas

from hpo.cli import main


def test_a_validation_split_chooses_the_epoch_and_the_winner(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    study = ["--storage", url, "--study", "v"]
    create = ["--sampler", "tpe", "--n-trials", "1", "--dataset", "digits", "--epochs", "12"]
    common = [*create, "--patience", "4", "--seed", "2"]
    assert main(["create", *study, *common]) == 0
    assert main(["create", "--storage", url, "--study", "w", *common, "--validation", "300"]) == 0
    worker = ["--device", "cpu", "--sampler-seed", "1", "--checkpoint-dir", str(tmp_path)]
    for name in ("v", "w"):
        assert main(["worker", *study[:2], "--study", name, *worker]) == 0
    held_out = optuna.load_study(study_name="w", storage=url).trials[0]
    curves = held_out.user_attrs["curves"]
    val, test = curves["val_loss"], curves["test_loss"]
    chosen = held_out.user_attrs["best_epoch"]
    # The first epoch of lowest validation loss. Whether the test loss would have picked another
    # one depends on the CPU's arithmetic (tests/hpo/trial/test_epoch_book.py makes them differ).
    assert chosen == 1 + val.index(min(val)) and val[chosen - 1] == held_out.value
    assert held_out.user_attrs["test_loss"] == test[chosen - 1]
    plain = optuna.load_study(study_name="v", storage=url).trials[0]
    assert "val_loss" not in plain.user_attrs["curves"]
    assert plain.user_attrs["best_epoch"] == 1 + plain.user_attrs["curves"]["test_loss"].index(
        plain.value
    )

    out = tmp_path / "best.json"
    assert main(["export", *study[:2], "--study", "w", "-o", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported["selected_on"] == "validation" and exported["validation"] == 300
    assert exported["epoch"] == chosen and exported["validation_loss"] == held_out.value
    assert exported["test_loss"] == test[chosen - 1]
    assert exported["chosen_by"] == "lowest validation loss of 1 complete trials"
    table = tmp_path / "trials.csv"
    assert main(["export", *study[:2], "--study", "w", "--all", "-o", str(table)]) == 0
    row = pandas.read_csv(table).iloc[0]
    assert (row["val_loss"], row["test_loss"]) == (held_out.value, test[chosen - 1])
    page = tmp_path / "report.html"
    assert main(["report", *study[:2], "--study", "w", "-o", str(page)]) == 0
    assert "chosen on the validation loss (300 held-out images)" in page.read_text()


def test_a_validation_split_that_leaves_no_training_images_is_refused(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    create = ["create", "--storage", url, "--study", "v", "--dataset", "digits"]
    assert main([*create, "--subset", "300", "--validation", "300"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --validation 300 leaves no training images: digits has 300 here"]
    assert main([*create, "--validation", "0"]) == 2
    assert not optuna.get_all_study_names(url)
