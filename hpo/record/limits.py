"""The one set of limits: every value a run can take, for every command that takes one.

Flags (`nesterov`) are on or off. A search space file (`hpo create --space`), the seed's grid,
a `--params` file (`hpo train`),
`hpo reproduce`'s options and a study's epochs and patience are all checked here, so whatever
`hpo create` accepts, every other command accepts too (tests/hpo/record/test_limits.py walks
each bound through each of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hpo.errors import UsageError
from model.hyperparams import FLAG_PARAMS, Hyperparams
from model.presets import PRESETS


@dataclass(frozen=True, kw_only=True)
class Limit:
    """The values one setting can take: between `low` and `high`, each bound included or not,
    whole numbers only where `whole`."""

    what: str  # the setting, as a sentence names it
    low: float
    high: float
    low_included: bool = True
    high_included: bool = True
    whole: bool = False

    @property
    def interval(self) -> str:
        low = int(self.low) if float(self.low).is_integer() else self.low
        high = int(self.high) if float(self.high).is_integer() else self.high
        opening = "[" if self.low_included else "("
        closing = "]" if self.high_included else ")"
        return f"{opening}{low}, {high}{closing}"

    def why_not(self, value: Any) -> str | None:
        """Why `value` is not one of these values; None when it is."""
        if not is_number(value):
            return f"{value!r} is not a number"
        if self.whole and not float(value).is_integer():
            return f"{self.what} is a whole number, got {value!r}"
        above_low = value >= self.low if self.low_included else value > self.low
        below_high = value <= self.high if self.high_included else value < self.high
        if not (above_low and below_high):
            return f"{self.what} is in {self.interval}, got {value!r}"
        return None


LIMITS: dict[str, Limit] = {
    # Ten times the seed's largest learning rate (1.0): room to explore, none to overflow.
    "learning_rate": Limit(what="a learning rate", low=0, high=10, low_included=False),
    # Four times the seed's largest batch size (512).
    "batch_size": Limit(what="a batch size", low=1, high=2048, whole=True),
    "p_dropout": Limit(what="a dropout probability", low=0, high=1, high_included=False),
    "momentum": Limit(what="SGD momentum", low=0, high=1, high_included=False),
    "lr_gamma": Limit(
        what="the per-epoch learning-rate factor (null: constant)",
        low=0,
        high=1,
        low_included=False,
    ),
    "weight_decay": Limit(what="weight decay", low=0, high=1),
    "epochs": Limit(what="a number of epochs", low=1, high=100_000, whole=True),
    "patience": Limit(what="a patience", low=1, high=100_000, whole=True),
}


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (YAML's `true` is not 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def why_not(name: str, value: Any) -> str | None:
    """Why setting `name` cannot take `value`; None when it can. A constant learning rate
    (`lr_gamma` null) is allowed; a flag (`nesterov`) is true or false."""
    if name == "lr_gamma" and value is None:
        return None
    if name in FLAG_PARAMS:
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    return LIMITS[name].why_not(value)


def check(name: str, value: Any, label: str | None = None) -> None:
    """A UsageError naming the setting (as `label`: the option that gave it) when `value` is
    out of its limits."""
    why = why_not(name, value)
    if why is not None:
        raise UsageError(f"{label or name}: {why}")


def check_hyperparams(params: Hyperparams, preset: str) -> None:
    """A UsageError for hyper-parameters a run cannot take, or a dropout that the preset needs
    and that is missing."""
    has_dropout = PRESETS[preset].dropout
    if has_dropout and params.p_dropout is None:
        raise UsageError(f"preset {preset} has dropout, so p_dropout is needed")
    for name, value in params.as_params().items():
        check(name, value)
    momentum = PRESETS[preset].momentum if params.momentum is None else params.momentum
    if params.nesterov and momentum == 0:
        raise UsageError(NESTEROV_NEEDS_MOMENTUM.format(preset=preset))


# SGD's Nesterov momentum is momentum looked ahead: without momentum PyTorch refuses it.
NESTEROV_NEEDS_MOMENTUM = (
    "nesterov: Nesterov momentum needs a momentum above 0 (preset {preset} has none: tune "
    "momentum with a range above 0, or pick a preset with momentum)"
)
