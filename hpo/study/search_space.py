"""The search space: the seed's grid (§1.4) and the same ranges for TPE.

The only place that calls `trial.suggest_*`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import optuna

from model.presets import PRESETS

# Literals, not np.arange: arange gives 0.30000000000000004, and grid values must be byte-identical
# in every worker and in every export.
LEARNING_RATES = (1.0, 0.1, 0.01, 0.001)
BATCH_SIZES = (64, 128, 256, 512)
DROPOUTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Hyperparams:
    learning_rate: float
    batch_size: int
    p_dropout: float | None  # None when the preset has no dropout layer


def grid_points(preset: str) -> list[dict[str, float | int]]:
    """Every grid point in the seed's loop order (lr, then batch size, then dropout)."""
    if PRESETS[preset].dropout:
        return [
            {"learning_rate": lr, "batch_size": bs, "p_dropout": p}
            for lr, bs, p in itertools.product(LEARNING_RATES, BATCH_SIZES, DROPOUTS)
        ]
    return [
        {"learning_rate": lr, "batch_size": bs}
        for lr, bs in itertools.product(LEARNING_RATES, BATCH_SIZES)
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
    return Hyperparams(float(learning_rate), int(batch_size), p_dropout)
