"""Numbers as people write them, in every YAML file the project reads: `1e-4` is a number, as in
JSON (PyYAML's YAML 1.1 read it as the string '1e-4'), and a whole-number setting takes `5e2`."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.errors import UsageError
from hpo.record.space_file import read_space
from hpo.record.yaml_numbers import load_yaml
from hpo.runs.retrain import read_params


@pytest.mark.parametrize(
    ("written", "value"),
    [("1e-4", 1e-4), ("1E-4", 1e-4), ("5e3", 5000.0), ("-2.5e-1", -0.25), ("+1e2", 100.0),
     ("1.0e-4", 1e-4), ("0.5", 0.5), ("10", 10), (".5", 0.5)],
)  # fmt: skip
def test_yaml_reads_exponents_as_numbers(written: str, value: float) -> None:
    read = load_yaml(f"x: {written}")["x"]
    assert read == value and type(read) is type(value)


def test_strings_and_times_stay_what_yaml_says() -> None:
    assert load_yaml("a: '1e-4'\nb: e5\nc: 1e\nd: 1.2.3") == {
        "a": "1e-4",
        "b": "e5",
        "c": "1e",
        "d": "1.2.3",
    }


def test_a_space_file_takes_exponents(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {low: 1e-4, high: 1E-1, log: true}\n")
    space = read_space(path, sampler="tpe", has_dropout=True)
    assert space.to_dict()["learning_rate"] == {"low": 1e-4, "high": 0.1, "log": True}


def test_a_space_file_takes_a_whole_batch_size_written_with_an_exponent(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("batch_size: {grid: [5e2, 1.28e2]}\n")
    assert read_space(path, sampler="grid", has_dropout=True).to_dict() == {
        "batch_size": {"grid": [500, 128]}
    }
    path.write_text("batch_size: {grid: [6.45e1]}\n")
    with pytest.raises(UsageError, match="whole number"):
        read_space(path, sampler="grid", has_dropout=True)


def _params(tmp_path: Path, **values: str) -> Path:
    fields = {"learning_rate": "1e-2", "batch_size": "64", "p_dropout": "5e-1", "epoch": "3"}
    fields.update(values)
    text = "".join(f"{k}: {v}\n" for k, v in fields.items())
    text += "dataset: digits\npreset: batchnorm\n"
    path = tmp_path / "best.yaml"
    path.write_text(text)
    return path


def test_a_params_file_takes_exponents_and_whole_numbers_written_with_one(tmp_path: Path) -> None:
    params = read_params(_params(tmp_path, batch_size="5e2", epoch="1e1", weight_decay="5e-4"))
    assert params.hyperparams.learning_rate == 0.01
    assert params.hyperparams.batch_size == 500 and isinstance(params.hyperparams.batch_size, int)
    assert params.hyperparams.weight_decay == 5e-4
    assert params.epoch == 10 and isinstance(params.epoch, int)
    with pytest.raises(UsageError, match=r"batch_size must be a whole number, got 64\.5"):
        read_params(_params(tmp_path, batch_size="6.45e1"))
