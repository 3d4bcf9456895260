"""The seed's grid as a heatmap: the best test loss per learning rate and batch size."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from hpo.record.seed_grid import BATCH_SIZES, LEARNING_RATES


def _nearest(value: float, choices: tuple[float, ...]) -> float:
    return min(choices, key=lambda c: abs(math.log(c) - math.log(value)))


def grid_heatmap(complete: list[FrozenTrial]) -> go.Figure:
    """Each cell of the seed's grid, learning rate by batch size: the lowest test loss of the
    trials in it (a sampler's continuous learning rates binned to the grid's nearest)."""
    best: dict[tuple[float, int], float] = {}
    for trial in complete:
        lr = trial.params.get("learning_rate")
        bs = trial.params.get("batch_size")
        if lr is None or bs is None or trial.value is None:
            continue
        cell = (_nearest(lr, LEARNING_RATES), bs)  # TPE's continuous rates, binned to the grid
        best[cell] = min(best.get(cell, math.inf), trial.value)
    z = [[best.get((lr, bs)) for bs in BATCH_SIZES] for lr in LEARNING_RATES]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(b) for b in BATCH_SIZES],
            y=[str(lr) for lr in LEARNING_RATES],
            colorscale="Viridis_r",
            colorbar=dict(title="test loss"),
            texttemplate="%{z:.3f}",
        )
    )
    figure.update_layout(xaxis_title="batch size", yaxis_title="learning rate")
    return figure
