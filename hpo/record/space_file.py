"""A search space chosen by the user (`hpo create --space FILE`): which hyper-parameters to tune,
over what, read from YAML or JSON once, checked, and stored with the study as plain data.

Each entry is one of
- a range: `{low, high}` with optional `log: true` and `step` (a whole-number `step` and whole
  bounds make an integer range, as batch sizes are);
- `{choices: [...]}`: one of these values;
- `{grid: [...]}`: the values a grid study runs (`--sampler grid` takes `grid` or `choices`, never
  ranges).
A parameter the file does not list keeps the preset's value. With no file, the study searches the
seed's grid or its ranges (hpo.record.seed_grid), exactly as before files existed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import UsageError
from hpo.record.limits import is_number, why_not
from hpo.record.yaml_numbers import YAMLError, load_yaml
from model.hyperparams import FLAG_PARAMS

# The names of the export (the seed's `best_params`) and of the preset's training settings.
TUNABLE = (
    "learning_rate",
    "batch_size",
    "p_dropout",
    "momentum",
    "lr_gamma",
    "weight_decay",
    "nesterov",
)
_INTEGER = {"batch_size"}
_KEYS = {"low", "high", "log", "step", "choices", "grid"}


@dataclass(frozen=True, kw_only=True)
class ParamRange:
    """What one parameter is tuned over: a range (`low`/`high`), or listed values."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    grid: tuple[Any, ...] | None = None

    @property
    def values(self) -> tuple[Any, ...] | None:
        """The listed values (choices or grid); None for a range."""
        return self.grid if self.grid is not None else self.choices

    @property
    def integer(self) -> bool:
        return self.name in _INTEGER

    def to_dict(self) -> dict[str, Any]:
        if self.values is not None:
            return {"grid" if self.grid is not None else "choices": list(self.values)}
        entry: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            entry["log"] = True
        if self.step is not None:
            entry["step"] = self.step
        return entry


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[ParamRange, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data, in TUNABLE's order: what the study stores and compares."""
        return {param.name: param.to_dict() for param in self.params}

    @classmethod
    def from_dict(cls, entries: Any, *, sampler: str, has_dropout: bool) -> SearchSpace:
        """Checked: a UsageError naming the parameter for anything a trial could not run."""
        if not isinstance(entries, dict) or not entries:
            raise UsageError("the search space must map parameter names to ranges or values")
        unknown = [name for name in entries if name not in TUNABLE]
        if unknown:
            raise UsageError(
                f"unknown parameter {unknown[0]!r} in the search space; tunable: "
                + ", ".join(TUNABLE)
            )
        params = tuple(
            _param(name, entries[name], sampler, has_dropout) for name in TUNABLE if name in entries
        )
        return cls(params)


def read_space(path: Path, *, sampler: str, has_dropout: bool) -> SearchSpace:
    """The search space in a YAML or JSON file (YAML reads JSON too)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read --space {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--space {path} is not text (YAML or JSON in UTF-8)") from None
    try:
        entries = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (ValueError, YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--space {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}"
        ) from None
    return SearchSpace.from_dict(entries, sampler=sampler, has_dropout=has_dropout)


def _param(name: str, entry: Any, sampler: str, has_dropout: bool) -> ParamRange:
    def fail(why: str) -> UsageError:
        return UsageError(f"search space, {name}: {why}")

    if name == "p_dropout" and not has_dropout:
        raise fail("the preset has no dropout layer (pick a preset with dropout)")
    if not isinstance(entry, dict):
        raise fail("give a range {low, high} or a list of choices or grid values")
    extra = set(entry) - _KEYS
    if extra:
        raise fail(f"unknown key {sorted(extra)[0]!r} (use low, high, log, step, choices, grid)")
    listed = [key for key in ("choices", "grid") if key in entry]
    ranged = [key for key in ("low", "high", "log", "step") if key in entry]
    if len(listed) > 1 or (listed and ranged):
        raise fail("give either a range (low, high) or one list (choices or grid), not both")
    if listed:
        key = listed[0]
        values = entry[key]
        if not isinstance(values, list) or not values:
            raise fail(f"{key} must be a non-empty list")
        if key == "grid" and sampler != "grid":
            raise fail(f"grid values are for --sampler grid; with {sampler}, use choices")
        if len(set(map(json.dumps, values))) != len(values):
            raise fail(f"{key} lists a value twice")
        for value in values:
            check_value(name, value, fail)
        if name == "lr_gamma":  # a constant rate is the factor 1.0, one value for every sampler
            values = [1.0 if value is None else value for value in values]
            if len(set(values)) != len(values):
                raise fail(f"{key} lists a constant rate twice (null and 1.0)")
        if name == "batch_size":
            values = [int(value) for value in values]
        if key == "grid":
            return ParamRange(name=name, grid=tuple(values))
        return ParamRange(name=name, choices=tuple(values))
    if name in FLAG_PARAMS:
        raise fail("on or off: give choices: [true, false] (or grid: for --sampler grid)")
    if sampler == "grid":
        raise fail("a grid study needs the values to run: give grid: [...] (not a range)")
    if "low" not in entry or "high" not in entry:
        raise fail("a range needs both low and high")
    low, high = entry["low"], entry["high"]
    for bound in (low, high):
        if not is_number(bound):
            raise fail(f"low and high must be numbers, got {bound!r}")
        check_value(name, bound, fail)
    if low >= high:
        raise fail(f"low ({low}) must be below high ({high})")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise fail(f"a log range needs low > 0, got {low}")
    step = entry.get("step")
    if step is not None:
        if not is_number(step) or step <= 0:
            raise fail(f"step must be a positive number, got {step!r}")
        if log:
            raise fail("a log range takes no step (Optuna's rule)")
    if name in _INTEGER:
        if not all(float(v).is_integer() for v in (low, high, step or 1)):
            raise fail("an integer: low, high and step must be whole numbers")
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    return ParamRange(name=name, low=low, high=high, log=log, step=step)


def check_value(name: str, value: Any, fail: Callable[[str], UsageError]) -> None:
    """A value the network and its optimizer can take (hpo.record.limits)."""
    why = why_not(name, value)
    if why is not None:
        raise fail(why)


def listed_as_choices(space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A stored space with its grid values as choices: the space of a study whose trials come
    queued with every parameter by a sampler other than the grid (`hpo confirm`'s)."""
    return {
        name: {"choices": entry["grid"]} if "grid" in entry else entry
        for name, entry in space.items()
    }
