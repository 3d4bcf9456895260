"""One set of limits: every bound walked through every entry point that takes the value.

Whatever a search space file accepts (`hpo create --space`), a `--params` file (`hpo train`) and
`hpo reproduce` accept too, and what one refuses the others refuse: all of them ask
hpo.record.limits. The seed's grid lies inside the limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.errors import UsageError
from hpo.record.config import StudyConfig
from hpo.record.limits import LIMITS, Limit, check_hyperparams
from hpo.record.seed_grid import BATCH_SIZES, DROPOUTS, LEARNING_RATES, grid_points
from hpo.record.space_file import TUNABLE, SearchSpace
from hpo.runs.reproduce import ReproduceOptions
from hpo.runs.retrain import read_params
from model.hyperparams import FLAG_PARAMS, Hyperparams

HYPERPARAMS = tuple(name for name in TUNABLE if name not in FLAG_PARAMS)  # each with its limit
STUDY_SETTINGS = ("epochs", "patience")


def _edges(limit: Limit) -> list[tuple[float, bool]]:
    """Each bound, and a value on either side of it: (value, accepted)."""
    step = 1 if limit.whole else 1e-9 * max(1.0, abs(limit.high))
    cases = [
        (limit.low, limit.low_included),
        (limit.low - step, False),
        (limit.low + step, True),
        (limit.high, limit.high_included),
        (limit.high + step, False),
        (limit.high - step, True),
    ]
    if limit.whole:
        cases.append((limit.low + 0.5, False))  # not a whole number
    return [(int(v) if limit.whole and float(v).is_integer() else v, ok) for v, ok in cases]


def test_every_setting_that_a_command_takes_has_its_limit() -> None:
    assert set(LIMITS) == {*HYPERPARAMS, *STUDY_SETTINGS}


def _accepted_by_space_file(name: str, value: float) -> bool:
    try:
        SearchSpace.from_dict({name: {"choices": [value]}}, sampler="tpe", has_dropout=True)
    except UsageError:
        return False
    return True


def _accepted_as_range_bound(name: str, value: float) -> bool:
    """`value` as one end of a range whose other end is well inside the limits."""
    limit = LIMITS[name]
    inside = (limit.low + limit.high) / 2
    if limit.whole:
        inside = round(inside)
    low, high = sorted((value, inside))
    if low == high:
        return True
    try:
        SearchSpace.from_dict({name: {"low": low, "high": high}}, sampler="tpe", has_dropout=True)
    except UsageError:
        return False
    return True


def _accepted_by_params_file(name: str, value: float, tmp_path: Path) -> bool:
    export = {
        "learning_rate": 0.01,
        "batch_size": 64,
        "p_dropout": 0.5,
        "epoch": 3,
        "dataset": "digits",
        "preset": "batchnorm",
        name: value,
    }
    path = tmp_path / "best.json"
    path.write_text(json.dumps(export))
    try:
        read_params(path)
    except UsageError:
        return False
    return True


@pytest.mark.parametrize("name", HYPERPARAMS)
def test_a_space_file_and_a_params_file_agree_on_every_bound(name: str, tmp_path: Path) -> None:
    for value, accepted in _edges(LIMITS[name]):
        assert _accepted_by_space_file(name, value) is accepted, (name, value)
        assert _accepted_as_range_bound(name, value) is accepted, (name, value)
        assert _accepted_by_params_file(name, value, tmp_path) is accepted, (name, value)


@pytest.mark.parametrize("name", ["learning_rate", "batch_size", "p_dropout", "epochs"])
def test_reproduce_takes_what_the_limits_take(name: str) -> None:
    for value, accepted in _edges(LIMITS[name]):
        try:
            ReproduceOptions(**{name: value})
        except UsageError as error:
            assert not accepted, (name, value, error)
            assert f"--{name.replace('_', '-')}:" in str(error)
        else:
            assert accepted, (name, value)


@pytest.mark.parametrize("name", STUDY_SETTINGS)
def test_a_study_and_a_params_file_agree_on_epochs_and_patience(name: str, tmp_path: Path) -> None:
    for value, accepted in _edges(LIMITS[name]):
        try:
            StudyConfig(dataset="synthetic", **{name: value})
        except UsageError:
            assert not accepted, (name, value)
        else:
            assert accepted, (name, value)
        if name == "epochs":  # the export's epoch: at most the study's epochs
            assert _accepted_by_params_file("epoch", value, tmp_path) is accepted, value


def test_the_seed_s_grid_lies_inside_the_limits() -> None:
    for name, values in (
        ("learning_rate", LEARNING_RATES),
        ("batch_size", BATCH_SIZES),
        ("p_dropout", DROPOUTS),
    ):
        for value in values:
            assert LIMITS[name].why_not(value) is None, (name, value)
    assert len(grid_points("batchnorm")) == 128


def test_a_learning_rate_above_the_limit_is_refused_where_it_used_to_be_accepted() -> None:
    """The newcomer's case: a log range from 12 to 50 ran, exported 26.85, and `hpo train`
    then refused the export. Now `hpo create` refuses the file."""
    with pytest.raises(UsageError, match=r"learning_rate: a learning rate is in \(0, 10\]"):
        SearchSpace.from_dict(
            {"learning_rate": {"low": 12, "high": 50, "log": True}},
            sampler="tpe",
            has_dropout=True,
        )


@pytest.mark.parametrize("value", [True, False])
def test_a_flag_is_on_or_off_in_every_entry_point(value: bool, tmp_path: Path) -> None:
    assert _accepted_by_space_file("nesterov", value)
    assert _accepted_by_params_file("nesterov", value, tmp_path)
    for wrong in (1, "yes please", 0.5):
        assert not _accepted_by_space_file("nesterov", wrong)
        assert not _accepted_by_params_file("nesterov", wrong, tmp_path)
    with pytest.raises(UsageError, match="nesterov: on or off"):
        SearchSpace.from_dict({"nesterov": {"low": 0, "high": 1}}, sampler="tpe", has_dropout=True)


def test_nesterov_needs_momentum_at_create_and_in_a_params_file() -> None:
    """PyTorch refuses Nesterov momentum without momentum: a study that could ask for it is
    refused when created, and so is a params file, with the same line."""
    on = {"nesterov": {"choices": [True, False]}}
    with pytest.raises(UsageError, match="Nesterov momentum needs a momentum above 0"):
        StudyConfig(dataset="synthetic", preset="augment", sampler="tpe", n_trials=2, space=on)
    ranged = {**on, "momentum": {"low": 0.0, "high": 0.9}}
    with pytest.raises(UsageError, match="Nesterov momentum needs a momentum above 0"):
        StudyConfig(
            dataset="synthetic", preset="batchnorm", sampler="tpe", n_trials=2, space=ranged
        )
    StudyConfig(dataset="synthetic", preset="batchnorm", sampler="tpe", n_trials=2, space=on)
    off = {"nesterov": {"choices": [False]}}
    StudyConfig(dataset="synthetic", preset="augment", sampler="tpe", n_trials=2, space=off)
    with pytest.raises(UsageError, match="Nesterov momentum needs a momentum above 0"):
        check_hyperparams(Hyperparams(learning_rate=0.1, batch_size=8, nesterov=True), "augment")
    check_hyperparams(Hyperparams(learning_rate=0.1, batch_size=8, nesterov=True), "momentum")
