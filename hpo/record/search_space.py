"""The search space: the seed's grid (§1.4) and the same ranges for TPE.

The only place that calls `trial.suggest_*`, and the one that says which hyper-parameters are in
range (for a file given to `hpo train` as much as for a trial).
"""

from __future__ import annotations

import itertools

import optuna

from hpo.errors import UsageError
from model.hyperparams import Hyperparams
from model.presets import PRESETS

# Literals, not np.arange: arange gives 0.30000000000000004, and grid values must be byte-identical
# in every worker and in every export.
LEARNING_RATES = (1.0, 0.1, 0.01, 0.001)
BATCH_SIZES = (64, 128, 256, 512)
DROPOUTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def grid_points(preset: str) -> list[Hyperparams]:
    """Every grid point in the seed's loop order (lr, then batch size, then dropout)."""
    dropouts: tuple[float | None, ...] = DROPOUTS if PRESETS[preset].dropout else (None,)
    return [
        Hyperparams(learning_rate=lr, batch_size=bs, p_dropout=p)
        for lr, bs, p in itertools.product(LEARNING_RATES, BATCH_SIZES, dropouts)
    ]


def suggest(trial: optuna.Trial, sampler: str, preset: str) -> Hyperparams:
    """Draw (TPE) or read (grid: the queued point) one trial's hyper-parameters."""
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


def check_in_range(params: Hyperparams, preset: str) -> None:
    """Raise a usage error for hyper-parameters outside the searched ranges (TPE's, which hold
    the grid), or a dropout that the preset does not have or needs."""
    lo, hi = min(LEARNING_RATES), max(LEARNING_RATES)
    if not lo <= params.learning_rate <= hi:
        raise UsageError(f"learning_rate {params.learning_rate} is outside [{lo}, {hi}]")
    if not 1 <= params.batch_size <= 4 * max(BATCH_SIZES):
        raise UsageError(f"batch_size {params.batch_size} is out of range")
    if PRESETS[preset].dropout:
        if params.p_dropout is None:
            raise UsageError(f"preset {preset} has dropout, so p_dropout is needed")
        if not min(DROPOUTS) <= params.p_dropout <= max(DROPOUTS):
            raise UsageError(
                f"p_dropout {params.p_dropout!r} is outside [{min(DROPOUTS)}, {max(DROPOUTS)}]"
            )
