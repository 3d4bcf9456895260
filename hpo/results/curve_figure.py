"""A trial's train/test loss and accuracy per epoch (the seed's figures) as a standalone SVG.

Drawn by hand rather than with plotly: optuna-dashboard shows trial artifacts as images, and
plotly can only write an image through an extra browser-based exporter. The SVG has no scripts
and no external references, so a browser shows it inside an <img>.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT = 760, 310
PANEL_WIDTH = 300
TOP, BOTTOM = 62, 260  # plot area's vertical extent
LEFTS = (60, 445)  # each panel's plot-area left edge
TRAIN_COLOUR, TEST_COLOUR = "#1f77b4", "#ff7f0e"

Curve = Sequence[float | None]


# Each panel: its y label, the train and test curves' keys, and the factor shown on the y axis.
PANELS = (
    ("loss", "train_loss", "test_loss", 1.0),
    ("accuracy (%)", "train_accuracy", "test_accuracy", 100.0),
)


def learning_curves_svg(
    curves: Mapping[str, Curve], title: str, best_epoch: int | None = None
) -> str:
    """Loss (left) and accuracy in % (right), train and test, epochs 1..n on the x axis.

    A `None` in a curve (a diverged epoch stored as null) breaks the line there.
    """
    keys = [key for _, train, test, _ in PANELS for key in (train, test)]
    epochs = max((len(curves.get(key, [])) for key in keys), default=0)
    panels = [
        _panel(left, label, curves.get(train, []), curves.get(test, []), epochs, best_epoch, scale)
        for left, (label, train, test, scale) in zip(LEFTS, PANELS, strict=True)
    ]
    legend = [
        ("train", f"stroke='{TRAIN_COLOUR}' stroke-width='2'"),
        ("test", f"stroke='{TEST_COLOUR}' stroke-width='2'"),
    ]
    if best_epoch is not None:
        legend.append(("best", "stroke='#555' stroke-dasharray='4 3'"))
    legend_svg = "".join(
        f"<line x1='{x}' y1='44' x2='{x + 24}' y2='44' {stroke}/>"
        f"<text x='{x + 30}' y='48'>{text}</text>"
        for x, (text, stroke) in zip(range(WIDTH - 250, WIDTH, 80), legend, strict=False)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' font-family='sans-serif' font-size='12'>"
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='white'/>"
        f"<text x='10' y='22' font-size='14'>{html.escape(title)}</text>"
        f"{legend_svg}{''.join(panels)}</svg>"
    )


def _panel(
    left: int,
    label: str,
    train: Curve,
    test: Curve,
    epochs: int,
    best_epoch: int | None,
    scale: float,
) -> str:
    frame = (
        f"<rect x='{left}' y='{TOP}' width='{PANEL_WIDTH}' height='{BOTTOM - TOP}' "
        "fill='none' stroke='#999'/>"
        f"<text x='{left + PANEL_WIDTH / 2}' y='{HEIGHT - 12}' text-anchor='middle'>epoch</text>"
        f"<text transform='translate({left - 45},{(TOP + BOTTOM) / 2}) rotate(-90)' "
        f"text-anchor='middle'>{label}</text>"
    )
    values = [v * scale for v in (*train, *test) if v is not None and math.isfinite(v)]
    if epochs == 0 or not values:
        return frame + (
            f"<text x='{left + PANEL_WIDTH / 2}' y='{(TOP + BOTTOM) / 2}' text-anchor='middle' "
            "fill='#777'>no epoch yet</text>"
        )
    y_ticks = nice_ticks(min(values), max(values), count=6)
    low, high = y_ticks[0], y_ticks[-1]
    x_ticks = [t for t in nice_ticks(1, max(epochs, 2), count=6) if 1 <= t <= max(epochs, 2)]
    x_high = max(epochs, 2)

    def x(epoch: float) -> float:
        return left + (epoch - 1) / (x_high - 1) * PANEL_WIDTH

    def y(value: float) -> float:
        return BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP)

    parts = [frame]
    for tick in y_ticks:
        parts.append(
            f"<line x1='{left}' y1='{y(tick):.1f}' x2='{left + PANEL_WIDTH}' y2='{y(tick):.1f}' "
            "stroke='#eee'/>"
            f"<text x='{left - 5}' y='{y(tick) + 4:.1f}' text-anchor='end'>{_label(tick)}</text>"
        )
    for tick in x_ticks:
        parts.append(
            f"<text x='{x(tick):.1f}' y='{BOTTOM + 16}' text-anchor='middle'>{_label(tick)}</text>"
        )
    if best_epoch is not None and 1 <= best_epoch <= x_high:
        parts.append(
            f"<line x1='{x(best_epoch):.1f}' y1='{TOP}' x2='{x(best_epoch):.1f}' y2='{BOTTOM}' "
            "stroke='#555' stroke-dasharray='4 3'/>"
        )
    for curve, colour in ((train, TRAIN_COLOUR), (test, TEST_COLOUR)):
        for run in _finite_runs(curve):
            points = " ".join(f"{x(e):.1f},{y(v * scale):.1f}" for e, v in run)
            if len(run) == 1:
                e, v = run[0]
                parts.append(
                    f"<circle cx='{x(e):.1f}' cy='{y(v * scale):.1f}' r='2.5' fill='{colour}'/>"
                )
            else:
                parts.append(
                    f"<polyline points='{points}' fill='none' stroke='{colour}' "
                    "stroke-width='1.8'/>"
                )
    return "".join(parts)


def _finite_runs(curve: Curve) -> list[list[tuple[int, float]]]:
    """Consecutive (epoch, value) stretches without a missing or non-finite value."""
    runs: list[list[tuple[int, float]]] = [[]]
    for epoch, value in enumerate(curve, start=1):
        if value is None or not math.isfinite(value):
            runs.append([])
        else:
            runs[-1].append((epoch, value))
    return [run for run in runs if run]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 × 10^k) covering [low, high]."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    first = math.floor(low / step) * step
    ticks = []
    tick = first
    while tick < high + step * 0.999:
        ticks.append(round(tick, 10))
        tick += step
    return ticks


def _label(value: float) -> str:
    return f"{value:g}"
