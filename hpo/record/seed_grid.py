"""The search space: the seed's grid (§1.4) and the same ranges for TPE.

The only place that calls `trial.suggest_*`. Which values are in range is hpo.record.limits'.
"""

from __future__ import annotations

import itertools

import optuna

from hpo.record.space_file import SearchSpace
from model.hyperparams import Hyperparams
from model.presets import PRESETS, STAGE_BATCH_SIZE, STAGE_DROPOUT, STAGE_LEARNING_RATE

# Literals, not np.arange: arange gives 0.30000000000000004, and grid values must be byte-identical
# in every worker and in every export.
LEARNING_RATES = (1.0, 0.1, 0.01, 0.001)
BATCH_SIZES = (64, 128, 256, 512)
DROPOUTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def grid_points(preset: str, space: SearchSpace | None = None) -> list[Hyperparams]:
    """Every grid point: the seed's in its loop order (lr, then batch size, then dropout), or the
    product of a search space's grid values in the order the file lists them (TUNABLE's order
    of parameters)."""
    if space is not None:
        return _space_grid(preset, space)
    dropouts: tuple[float | None, ...] = DROPOUTS if PRESETS[preset].dropout else (None,)
    return [
        Hyperparams(learning_rate=lr, batch_size=bs, p_dropout=p)
        for lr, bs, p in itertools.product(LEARNING_RATES, BATCH_SIZES, dropouts)
    ]


def suggest(
    trial: optuna.Trial, sampler: str, preset: str, space: SearchSpace | None = None
) -> Hyperparams:
    """Draw (the samplers) or read (grid: the queued point) one trial's hyper-parameters."""
    if space is not None:
        return _suggest_in(trial, preset, space)
    has_dropout = PRESETS[preset].dropout
    if sampler == "grid":
        learning_rate = trial.suggest_categorical("learning_rate", LEARNING_RATES)
        batch_size = trial.suggest_categorical("batch_size", BATCH_SIZES)
        p_dropout = trial.suggest_categorical("p_dropout", DROPOUTS) if has_dropout else None
    else:
        learning_rate = trial.suggest_float(
            "learning_rate", min(LEARNING_RATES), max(LEARNING_RATES), log=True
        )
        batch_size = trial.suggest_categorical("batch_size", BATCH_SIZES)
        p_dropout = (
            trial.suggest_float("p_dropout", min(DROPOUTS), max(DROPOUTS)) if has_dropout else None
        )
    return Hyperparams(
        learning_rate=float(learning_rate), batch_size=int(batch_size), p_dropout=p_dropout
    )


def _space_grid(preset: str, space: SearchSpace) -> list[Hyperparams]:
    defaults = _untuned(preset, space)
    listed = [(param.name, param.values or ()) for param in space.params]
    return [
        Hyperparams.from_params(
            {**defaults, **dict(zip([n for n, _ in listed], values, strict=True))}
        )
        for values in itertools.product(*(values for _, values in listed))
    ]


def _suggest_in(trial: optuna.Trial, preset: str, space: SearchSpace) -> Hyperparams:
    values = _untuned(preset, space)
    for param in space.params:
        if param.values is not None:
            values[param.name] = trial.suggest_categorical(param.name, list(param.values))
        elif param.integer:
            assert param.low is not None and param.high is not None
            values[param.name] = trial.suggest_int(
                param.name,
                int(param.low),
                int(param.high),
                step=int(param.step or 1),
                log=param.log,
            )
        else:
            assert param.low is not None and param.high is not None
            values[param.name] = trial.suggest_float(
                param.name, param.low, param.high, step=param.step, log=param.log
            )
    return Hyperparams.from_params(values)


def _untuned(preset: str, space: SearchSpace) -> dict[str, object]:
    """The seed's values of what the space leaves out: those it trained its stages with (Q18,
    Q29, as `hpo reproduce`); the optimizer's settings stay the preset's (None)."""
    defaults: dict[str, object] = {
        "learning_rate": STAGE_LEARNING_RATE,
        "batch_size": STAGE_BATCH_SIZE,
    }
    if PRESETS[preset].dropout:
        defaults["p_dropout"] = STAGE_DROPOUT
    return {name: value for name, value in defaults.items() if name not in space.names}


def trial_hyperparams(
    params: dict[str, object], preset: str, space: SearchSpace | None
) -> Hyperparams:
    """A trial's hyper-parameters from its parameters: with a search space, the seed's values
    for what it does not tune."""
    if space is None:
        return Hyperparams.from_params(params)
    return Hyperparams.from_params({**_untuned(preset, space), **params})
