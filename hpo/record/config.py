"""A study's settings: fixed at creation, stored in the study; a worker needs only its name."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

from hpo.errors import UsageError
from hpo.record.limits import NESTEROV_NEEDS_MOMENTUM, check
from hpo.record.seed_grid import grid_points
from hpo.record.space_file import SearchSpace
from model.data_spec import DATASETS, DataSpec
from model.hyperparams import Hyperparams
from model.presets import DEFAULT_PRESET, PRESETS

# Optuna's samplers by short name. Every one but the grid samples each trial when a worker takes
# it from the study's queue of `n_trials` slots (hpo.study.queue).
SAMPLERS = ("grid", "tpe", "gp", "cmaes", "random", "qmc")
PRUNERS = ("none", "median", "hyperband")
CONFIG_ATTR = "hpo_config"  # study user attr holding `StudyConfig.to_dict()`


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    sampler: str = "grid"
    dataset: str = "cifar10"
    data_dir: str = "data"
    epochs: int = 150
    patience: int = 10
    n_trials: int | None = None  # TPE budget; a grid runs each of its points once
    pruner: str = "none"
    seed: int = 0
    preset: str = DEFAULT_PRESET
    subset: int | None = None  # use only this many training images (quick runs)
    # Hold this many training images out and select on their loss (None: on the test loss).
    validation: int | None = None
    keep_models: int = 3  # the best-epoch weights of this many best trials are kept
    # Set in a confirmation study (`hpo confirm`): the study whose winners it retrains.
    confirms: str | None = None
    # The search space from `--space FILE` (SearchSpace.to_dict()); None: the seed's grid, or
    # its ranges for the other samplers.
    space: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("dataset", self.dataset, DATASETS)
        _choice("pruner", self.pruner, PRUNERS)
        _choice("preset", self.preset, tuple(PRESETS))
        check("epochs", self.epochs, "--epochs")
        check("patience", self.patience, "--patience")
        if self.subset is not None:
            _positive("subset", self.subset)
        if self.validation is not None:
            _positive("validation", self.validation)
            available = self.data_spec.train_size
            if self.validation >= available:
                raise UsageError(
                    f"--validation {self.validation} leaves no training images: {self.dataset}"
                    f" has {available} here"
                )
        if not isinstance(self.keep_models, int) or self.keep_models < 0:
            raise UsageError(f"--keep-models must be 0 or more, got {self.keep_models!r}")
        if self.sampler != "grid":
            if self.n_trials is None:
                raise UsageError(
                    f"--n-trials is required with --sampler {self.sampler} (the search budget)"
                )
            _positive("n-trials", self.n_trials)
        elif self.n_trials is not None:
            raise UsageError("--n-trials is for the samplers; a grid study runs every grid point")
        space = self.search_space  # checked: a UsageError naming the parameter
        if space is not None:
            _check_nesterov(space, self.preset)

    @functools.cached_property
    def grid(self) -> list[Hyperparams]:
        """Every point of the study's grid (a grid study's queue), computed once."""
        return grid_points(self.preset, self.search_space)

    @property
    def planned_trials(self) -> int:
        """How many trials the study runs: its grid's points, or its budget."""
        return len(self.grid) if self.sampler == "grid" else self.n_trials or 0

    @property
    def search_space(self) -> SearchSpace | None:
        if self.space is None:
            return None
        return SearchSpace.from_dict(
            self.space, sampler=self.sampler, has_dropout=PRESETS[self.preset].dropout
        )

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(
            dataset=self.dataset,
            data_dir=self.data_dir,
            subset=self.subset,
            seed=self.seed,
            validation=self.validation,
        )

    @property
    def selected_on(self) -> str:
        """Which loss picks the best epoch and the winner: "validation" or "test"."""
        return "test" if self.validation is None else "validation"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> StudyConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"invalid {name} {value!r}; choose one of {', '.join(allowed)}")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"--{name} must be a positive integer, got {value!r}")


def _check_nesterov(space: SearchSpace, preset: str) -> None:
    """A space whose trials may turn Nesterov momentum on gives every trial momentum: the
    momentum it tunes, or the preset's."""
    params = {param.name: param for param in space.params}
    nesterov = params.get("nesterov")
    if nesterov is None or not any(value is True for value in nesterov.values or ()):
        return
    momentum = params.get("momentum")
    if momentum is None:
        lowest = PRESETS[preset].momentum
    elif momentum.values is not None:
        lowest = min(momentum.values)
    else:
        lowest = momentum.low or 0.0
    if lowest == 0:
        raise UsageError("search space, " + NESTEROV_NEEDS_MOMENTUM.format(preset=preset))
