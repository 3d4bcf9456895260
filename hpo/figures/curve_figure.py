"""A trial's train/test loss and accuracy per epoch (the seed's figures) as a standalone SVG.

Drawn by hand rather than with plotly: optuna-dashboard shows trial artifacts as images, and
plotly can only write an image through an extra browser-based exporter. The SVG has no scripts
and no external references, so a browser shows it inside an <img>.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from hpo.figures.ticks import integer_ticks, nice_ticks

WIDTH, HEIGHT = 760, 310
PANEL_WIDTH = 300
TOP, BOTTOM = 62, 260  # plot area's vertical extent
LEFTS = (60, 445)  # each panel's plot-area left edge
TRAIN_COLOUR, TEST_COLOUR, BEST_COLOUR = "#1f77b4", "#ff7f0e", "#555555"

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
        legend.append(("best epoch", f"stroke='{BEST_COLOUR}' stroke-dasharray='4 3'"))
    # The classes name each part (legend entry, plot area, curve, tick, title) for the browser
    # test that checks the figure as drawn.
    legend_svg = "".join(
        f"<g class='legend-entry'><line x1='{x}' y1='44' x2='{x + 24}' y2='44' {stroke}/>"
        f"<text x='{x + 30}' y='48'>{text}</text></g>"
        for x, (text, stroke) in zip(range(WIDTH - 290, WIDTH, 90), legend, strict=False)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='learning-curves' width='{WIDTH}' "
        f"height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' font-family='sans-serif' font-size='12'>"
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='white'/>"
        f"<text class='title' x='10' y='22' font-size='14'>{html.escape(title)}</text>"
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
    panel = "x1" if left == LEFTS[0] else "x2"
    y_axis = panel.replace("x", "y")
    frame = (
        f"<rect class='plot-area' x='{left}' y='{TOP}' width='{PANEL_WIDTH}' "
        f"height='{BOTTOM - TOP}' fill='none' stroke='#999'/>"
        f"<text class='axis-title' data-axis='{panel}' x='{left + PANEL_WIDTH / 2}' "
        f"y='{HEIGHT - 12}' text-anchor='middle'>epoch</text>"
        f"<text class='axis-title' data-axis='{y_axis}' "
        f"transform='translate({left - 45},{(TOP + BOTTOM) / 2}) rotate(-90)' "
        f"text-anchor='middle'>{label}</text>"
    )
    values = [v * scale for v in (*train, *test) if v is not None and math.isfinite(v)]
    if epochs == 0 or not values:
        return f"<g class='panel'>{frame}" + (
            f"<text x='{left + PANEL_WIDTH / 2}' y='{(TOP + BOTTOM) / 2}' text-anchor='middle' "
            "fill='#777'>no epoch yet</text></g>"
        )
    y_ticks = nice_ticks(min(values), max(values), count=6)
    low, high = y_ticks[0], y_ticks[-1]
    x_high = max(epochs, 2)
    x_ticks = integer_ticks(1, x_high)

    def x(epoch: float) -> float:
        return left + (epoch - 1) / (x_high - 1) * PANEL_WIDTH

    def y(value: float) -> float:
        return BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP)

    parts = [frame]
    for tick in y_ticks:
        parts.append(
            f"<line x1='{left}' y1='{y(tick):.1f}' x2='{left + PANEL_WIDTH}' y2='{y(tick):.1f}' "
            "stroke='#eee'/>"
            f"<text class='tick' data-axis='{y_axis}' x='{left - 5}' y='{y(tick) + 4:.1f}' "
            f"text-anchor='end'>{_label(tick)}</text>"
        )
    for tick in x_ticks:
        parts.append(
            f"<text class='tick' data-axis='{panel}' x='{x(tick):.1f}' y='{BOTTOM + 16}' "
            f"text-anchor='middle'>{_label(tick)}</text>"
        )
    if best_epoch is not None and 1 <= best_epoch <= x_high:
        parts.append(
            f"<line class='curve' x1='{x(best_epoch):.1f}' y1='{TOP}' x2='{x(best_epoch):.1f}' "
            f"y2='{BOTTOM}' stroke='{BEST_COLOUR}' stroke-dasharray='4 3'/>"
        )
    for curve, colour in ((train, TRAIN_COLOUR), (test, TEST_COLOUR)):
        for run in _finite_runs(curve):
            points = " ".join(f"{x(e):.1f},{y(v * scale):.1f}" for e, v in run)
            if len(run) == 1:
                e, v = run[0]
                parts.append(
                    f"<circle class='curve' cx='{x(e):.1f}' cy='{y(v * scale):.1f}' r='2.5' "
                    f"fill='{colour}'/>"
                )
            else:
                parts.append(
                    f"<polyline class='curve' points='{points}' fill='none' stroke='{colour}' "
                    "stroke-width='1.8'/>"
                )
    return f"<g class='panel'>{''.join(parts)}</g>"


def _finite_runs(curve: Curve) -> list[list[tuple[int, float]]]:
    """Consecutive (epoch, value) stretches without a missing or non-finite value."""
    runs: list[list[tuple[int, float]]] = [[]]
    for epoch, value in enumerate(curve, start=1):
        if value is None or not math.isfinite(value):
            runs.append([])
        else:
            runs[-1].append((epoch, value))
    return [run for run in runs if run]


def _label(value: float) -> str:
    return f"{value:g}"
