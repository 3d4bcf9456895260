"""Round axis ticks: steps of 1, 2 or 5 × 10^k, and whole-number steps on counting axes.

A reader reads a figure off its ticks: 0.048, 0.25, 0.451 tell nothing, and "epoch 1.5" or
"trial 0.5" name things that do not exist. Shared by the hand-drawn SVG and the plotly figures.
"""

from __future__ import annotations

import math
from typing import Any


def nice_step(raw_step: float) -> float:
    """The smallest step of 1, 2 or 5 × 10^k that is at least `raw_step` (> 0)."""
    magnitude = 10 ** math.floor(math.log10(raw_step))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step * (1 - 1e-9))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], about `count` of them."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = nice_step((high - low) / max(count - 1, 1))
    ticks = []
    tick = math.floor(low / step) * step
    while tick < high + step * 0.999:
        ticks.append(round(tick, 10))
        tick += step
    return ticks


def integer_step(low: float, high: float, count: int = 6) -> int:
    """A whole-number round step for an axis of counts (epochs, trials) from `low` to `high`."""
    return max(1, round(nice_step(max(high - low, 1) / max(count - 1, 1))))


def integer_ticks(low: float, high: float, count: int = 6) -> list[int]:
    """Whole-number round ticks within [low, high]."""
    step = integer_step(low, high, count)
    first = math.ceil(low / step) * step
    return list(range(first, math.floor(high) + 1, step))


def integer_axis(low: float, high: float, count: int = 6) -> dict[str, Any]:
    """Plotly axis settings that put ticks on whole numbers only (plotly's own choice can fall
    on 0.5 steps when the range is short)."""
    return dict(tickmode="linear", tick0=0, dtick=integer_step(low, high, count))
