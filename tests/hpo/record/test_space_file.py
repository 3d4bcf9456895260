"""Search spaces from a file (`hpo create --space`): what reaches the optimizer, what a bad file
says, and that no file means the seed's search exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from hpo.cli import main
from hpo.record.config import CONFIG_ATTR, StudyConfig
from hpo.record.seed_grid import grid_points
from hpo.study.queue import create_study, open_study
from hpo.workqueue.queries import queued_params
from storage import open_storage, parse_storage_url

SPACE = """\
learning_rate: {low: 0.001, high: 0.1, log: true}
batch_size: {choices: [16, 32]}
momentum: {low: 0.8, high: 0.99}
weight_decay: {low: 1e-6, high: 1e-3, log: true}
nesterov: {choices: [true, false]}
"""


def _create(tmp_path: Path, space: str, *extra: str, name: str = "space.yaml") -> int:
    path = tmp_path / name
    path.write_text(space)
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = ["--dataset", "synthetic", "--subset", "32", "--epochs", "1", "--space", str(path)]
    return main(["create", "--storage", url, "--study", "s", *settings, *extra])


def test_a_file_space_reaches_the_optimizer(tmp_path: Path, monkeypatch) -> None:
    """The trial's SGD gets the momentum, weight decay and Nesterov switch that the sampler
    suggested, and so do the export and `hpo train --params`."""
    assert _create(tmp_path, SPACE, "--sampler", "tpe", "--n-trials", "2") == 0
    optimizers: list[dict] = []
    original = torch.optim.SGD.__init__

    def recorded(self, params, **settings) -> None:
        optimizers.append(settings)
        original(self, params, **settings)

    monkeypatch.setattr(torch.optim.SGD, "__init__", recorded)
    url = f"sqlite:///{tmp_path / 's.db'}"
    worker = ["worker", "--storage", url, "--study", "s", "--device", "cpu"]
    assert main([*worker, "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert len(trials) == 2 == len(optimizers)
    for trial, settings in zip(trials, optimizers, strict=True):
        assert set(trial.params) == {
            "learning_rate", "batch_size", "momentum", "weight_decay", "nesterov"
        }  # fmt: skip
        assert settings["lr"] == trial.params["learning_rate"]
        assert settings["momentum"] == trial.params["momentum"]
        assert settings["weight_decay"] == trial.params["weight_decay"]
        assert settings["nesterov"] is trial.params["nesterov"]
        assert 0.8 <= settings["momentum"] <= 0.99 and trial.params["batch_size"] in (16, 32)
    export = tmp_path / "best.json"
    assert main(["export", "--storage", url, "--study", "s", "-o", str(export)]) == 0
    exported = json.loads(export.read_text())
    best = optuna.load_study(study_name="s", storage=url).best_trial
    # The contract's keys, then the other tuned ones; p_dropout is the seed stage's 0.5.
    assert exported["momentum"] == best.params["momentum"] and exported["p_dropout"] == 0.5
    assert exported["nesterov"] is best.params["nesterov"]
    assert "lr_gamma" not in exported
    # `hpo train --params` retrains with them, and its model file says so.
    optimizers.clear()
    model = tmp_path / "model.pt"
    assert main(["train", "--params", str(export), "--device", "cpu", "-o", str(model)]) == 0
    assert optimizers[0]["momentum"] == best.params["momentum"]
    assert optimizers[0]["weight_decay"] == best.params["weight_decay"]
    assert optimizers[0]["nesterov"] is best.params["nesterov"]
    saved = torch.load(model, weights_only=True)["params"]
    assert saved["momentum"] == best.params["momentum"] and saved["lr_gamma"] is None
    assert saved["nesterov"] is best.params["nesterov"]


def test_a_grid_from_a_file_runs_its_product_and_a_constant_rate_is_null(tmp_path) -> None:
    space = "lr_gamma: {grid: [null, 0.9]}\nmomentum: {grid: [0.0, 0.9]}\n"
    assert _create(tmp_path, space, "--sampler", "grid", "--preset", "momentum") == 0
    url = f"sqlite:///{tmp_path / 's.db'}"
    queued = [
        queued_params(t)
        for t in optuna.load_study(study_name="s", storage=url).trials
    ]
    # The product in the export's order of parameters: momentum, then lr_gamma.
    assert [(q["momentum"], q["lr_gamma"]) for q in queued] == [
        (0.0, 1.0), (0.0, 0.9), (0.9, 1.0), (0.9, 0.9)
    ]  # fmt: skip
    assert {q["learning_rate"] for q in queued} == {0.1}  # the seed's stage value


@pytest.mark.parametrize(
    "space,sampler,says",
    [
        ("momentun: {low: 0.1, high: 0.9}", "tpe", "unknown parameter 'momentun'"),
        ("momentum: {low: 0.9, high: 0.1}", "tpe", "momentum: low (0.9) must be below high"),
        ("weight_decay: {low: 0, high: 0.1, log: true}", "tpe", "weight_decay: a log range"),
        ("learning_rate: {low: 0.01, high: 0.1}", "grid", "learning_rate: a grid study needs"),
        ("batch_size: {choices: [0, 64]}", "tpe", "batch_size: a batch size is in [1, 2048]"),
        ("p_dropout: {low: 0.2, high: 1.5}", "tpe", "p_dropout: a dropout probability"),
        ("lr_gamma: {grid: [0.9]}", "tpe", "lr_gamma: grid values are for --sampler grid"),
        ("momentum: [0.9]", "tpe", "momentum: give a range"),
        ("momentum: {low: 0.1, high: 0.9", "tpe", "is not valid YAML"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_parameter_and_writes_nothing(
    tmp_path: Path, capsys, space: str, sampler: str, says: str
) -> None:
    budget = ["--n-trials", "3"] if sampler != "grid" else []
    assert _create(tmp_path, space, "--sampler", sampler, *budget) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 's.db'}"
    )


def test_a_space_file_that_is_not_text_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(b"learning_rate: {low: \xd0\xff}")  # not UTF-8: a binary file given by mistake
    url = f"sqlite:///{tmp_path / 's.db'}"
    create = ["create", "--storage", url, "--study", "s", "--sampler", "tpe", "--n-trials", "2"]
    assert main([*create, "--space", str(path)]) == 2
    assert capsys.readouterr().err == f"error: --space {path} is not text (YAML or JSON in UTF-8)\n"


def test_a_json_space_and_another_space_for_the_same_study(tmp_path: Path, capsys) -> None:
    space = json.dumps({"momentum": {"low": 0.8, "high": 0.99}})
    args = ["--sampler", "random", "--n-trials", "2"]
    assert _create(tmp_path, space, *args, name="space.json") == 0
    assert _create(tmp_path, space, *args, name="space.json") == 0  # the same: a no-op
    other = json.dumps({"momentum": {"low": 0.5, "high": 0.99}})
    assert _create(tmp_path, other, *args, name="other.json") == 2
    assert "already exists with other settings: space" in capsys.readouterr().err


def test_without_a_file_the_grid_is_the_seeds_128_points_and_old_studies_open(tmp_path) -> None:
    """A study stored by the version before spaces existed (no `space` in its settings) opens,
    and creating it again is the same study."""
    points = grid_points("batchnorm")
    assert len(points) == 128 and len({p.as_params().__repr__() for p in points}) == 128
    assert points[0].as_params() == {"learning_rate": 1.0, "batch_size": 64, "p_dropout": 0.2}
    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = open_storage(parse_storage_url(url), create=True)
    config = StudyConfig(dataset="synthetic")
    assert create_study(storage, "old", config)
    study = optuna.load_study(study_name="old", storage=storage)
    stored = {k: v for k, v in config.to_dict().items() if k != "space"}
    study.set_user_attr(CONFIG_ATTR, stored)  # as the previous version stored it
    assert open_study(storage, "old").config == config
    assert not create_study(storage, "old", config)
    queued = [queued_params(t) for t in study.trials]
    assert queued == [p.as_params() for p in points]
