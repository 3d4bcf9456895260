"""`hpo report`: one self-contained HTML page about a study (plotly inlined, opens offline).

Everything comes from the database: trial values, parameters, and the per-epoch curves that the
objective stores in each trial's user attributes. Learning curves of all trials are drawn as one
trace with gaps, so a study of 1,000 trials stays one light plot rather than 1,000 traces.
"""

from __future__ import annotations

import html
import math
import time
from collections import Counter
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from hpo.confirm.statistics import (
    CONFIRMATION_HEADER,
    confirmation_figure,
    confirmation_table,
    load_confirmation,
    verdict,
)
from hpo.figures.grid_heatmap import grid_heatmap
from hpo.figures.page import figure_html, html_page, section, table_html
from hpo.figures.ticks import integer_axis, integer_ticks
from hpo.figures.trial_figure import trial_curves
from hpo.record.ranking import ranked
from hpo.record.trial_record import TrialRecord
from hpo.reports.export import study_export
from hpo.study.queue import best_trial, load_config
from model.hyperparams import EXTRA_PARAMS, FLAG_PARAMS

TOP_TRIALS = 15


def build_report(storage: optuna.storages.BaseStorage, study_name: str) -> str:
    config = load_config(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = best_trial(study)
    confirmation = load_confirmation(storage, study_name)
    export = study_export(study, config, confirmation)
    loss_name = f"{config.selected_on} loss"  # what the trials' values are
    sections = [
        section("Best configuration", _best_table(export)),
        section("Trials by state and stop reason", figure_html(_counts_figure(trials))),
        section(f"Top {TOP_TRIALS} trials", _top_table(complete, loss_name)),
        section(
            "Optimization history",
            f"<p>{html.escape(_history_caption(trials))}</p>"
            + figure_html(_history_figure(trials, loss_name)),
        ),
        section(
            "Test-loss curves of all trials (best in red)",
            figure_html(_curves_figure(trials, best)),
        ),
    ]
    if best is not None:
        sections.append(
            section(
                f"Best trial {best.number}: loss and accuracy per epoch",
                # Room above the plot for the best epoch's label, clear of the mode bar.
                figure_html(_best_curves_figure(best), height=580, top=60),
            )
        )
    if confirmation is not None:
        sections.append(
            section(
                f"Confirmation across seeds ({confirmation.study})",
                f"<p>{html.escape(verdict(confirmation))}; {confirmation.finished} of "
                f"{confirmation.total} runs finished.</p>"
                + figure_html(confirmation_figure(confirmation))
                + table_html(CONFIRMATION_HEADER, confirmation_table(confirmation), "confirm"),
            )
        )
    sections += [
        section("Hyper-parameter importance", _importance(study, complete)),
        section(
            f"Best {loss_name} by learning rate and batch size",
            figure_html(grid_heatmap(complete)),
        ),
        # Parallel coordinates draw their axis titles above the plot: room for two lines.
        section("Parallel coordinates", figure_html(_parallel_figure(complete), top=80)),
    ]
    title = f"hpo report: {study_name}"
    subtitle = (
        f"{config.sampler} on {config.dataset}, preset {config.preset}, up to "
        f"{config.epochs} epochs, patience {config.patience}; chosen on the {loss_name}"
        + (f" ({config.validation} held-out images)" if config.validation else "")
        + f"; {len(trials)} trials; "
        f"written {time.strftime('%Y-%m-%d %H:%M')}"
    )
    return html_page(title, subtitle, sections)


def _best_table(export: dict[str, Any] | None) -> str:
    if export is None:
        return "<p>No completed trial yet.</p>"
    rows = [
        [key, _shown(key, value)]
        for key, value in export.items()
        # Drawn in the best trial's figure, and shown in the confirmation's section, below.
        if key not in ("test_loss_curve", "confirmation")
    ]
    return table_html(["", "value"], rows, row_id="best")


def _shown(key: str, value: Any) -> Any:
    """A value of the export as a reader wants it: accuracy in %, the fast paths by name."""
    if key == "test_accuracy":
        return f"{100 * value:.2f}%"
    if key == "speed":
        return ", ".join(value) or "none (plain fp32)"
    return value


def _top_table(complete: list[FrozenTrial], loss_name: str) -> str:
    top = ranked(complete)[:TOP_TRIALS]
    # The optimizer's settings that a search space tuned, one column each.
    extras = [name for name in EXTRA_PARAMS if any(name in t.params for t in top)]
    rows = [
        [
            t.number,
            t.params.get("learning_rate"),
            t.params.get("batch_size"),
            t.params.get("p_dropout"),
            *(t.params.get(name) for name in extras),
            r.best_epoch,
            t.value,
            f"{100 * _or_nan(r.test_accuracy):.2f}%",
            r.epochs_run,
            r.stop_reason,
        ]
        for t in top
        for r in [TrialRecord.from_trial(t)]
    ]
    return table_html(
        [
            "trial",
            "learning rate",
            "batch",
            "dropout",
            *(name.replace("_", " ") for name in extras),
            "best epoch",
            loss_name,
            "test accuracy",
            "epochs run",
            "stop",
        ],
        rows,
        row_id="top",
    )


def _counts_figure(trials: list[FrozenTrial]) -> go.Figure:
    states = Counter(t.state.name for t in trials)
    reasons = Counter(
        str(TrialRecord.from_trial(t).stop_reason)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    )
    figure = go.Figure()
    figure.add_bar(x=list(states), y=list(states.values()), name="state")
    figure.add_bar(x=list(reasons), y=list(reasons.values()), name="stop reason")
    figure.update_layout(
        yaxis=dict(title="trials", **integer_axis(0, max([*states.values(), *reasons.values(), 1])))
    )
    return figure


HISTORY_COLOURS = {"complete": "#1f77b4", "pruned": "#b0b0b0", "best": "#d62728"}


def _history_caption(trials: list[FrozenTrial]) -> str:
    states = Counter(t.state for t in trials)
    not_drawn = len(trials) - states[TrialState.COMPLETE] - states[TrialState.PRUNED]
    return (
        f"{len(trials)} trials: {states[TrialState.COMPLETE]} complete (blue), "
        f"{states[TrialState.PRUNED]} pruned (grey, at the last loss they reported)"
        + (f"; not drawn: {not_drawn} failed, running or waiting" if not_drawn else "")
        + ". The red line is the lowest loss of the complete trials so far."
    )


def _history_figure(trials: list[FrozenTrial], loss_name: str) -> go.Figure:
    """Every finished trial at its value: a PRUNED trial's value is the last loss it reported
    (Optuna stores that), drawn grey since it never competes for the best."""
    figure = go.Figure()
    by_state = {
        state: sorted(
            (t for t in trials if t.state == state and t.value is not None), key=lambda t: t.number
        )
        for state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    for state, name in ((TrialState.COMPLETE, "complete"), (TrialState.PRUNED, "pruned")):
        figure.add_scatter(
            x=[t.number for t in by_state[state]],
            y=[t.value for t in by_state[state]],
            mode="markers",
            name=name,
            marker=dict(color=HISTORY_COLOURS[name], size=8),
        )
    complete = by_state[TrialState.COMPLETE]
    values = [t.value for t in complete if t.value is not None]
    figure.add_scatter(
        x=[t.number for t in complete],
        y=list(np.minimum.accumulate(values)) if values else [],
        mode="lines",
        line_shape="hv",
        name="best so far",
        line=dict(color=HISTORY_COLOURS["best"]),
    )
    last = max((t.number for t in trials), default=1)
    figure.update_layout(
        xaxis=dict(title="trial", **integer_axis(0, last)),
        yaxis=dict(title=loss_name, type="log"),
    )
    return figure


def _curve(trial: FrozenTrial, key: str) -> list[float | None]:
    return TrialRecord.from_trial(trial).curve(key)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _curves_figure(trials: list[FrozenTrial], best: FrozenTrial | None) -> go.Figure:
    xs: list[int | None] = []
    ys: list[float | None] = []
    for trial in trials:
        if trial is best:
            continue
        losses = trial_curves(trial)["test_loss"]
        xs += [*range(1, len(losses) + 1), None]
        ys += [*losses, None]
    # SVG, not WebGL: one path with gaps stays light, and the browser test can see it drawn.
    figure = go.Figure()
    figure.add_scatter(
        x=xs, y=ys, mode="lines", name="trials", line=dict(color="rgba(100,100,100,0.25)", width=1)
    )
    if best is not None:
        losses = _curve(best, "test_loss")
        figure.add_scatter(
            x=list(range(1, len(losses) + 1)),
            y=losses,
            mode="lines",
            name=f"best (trial {best.number})",
            line=dict(color="red", width=3),
        )
    longest = max((x for x in xs if x is not None), default=1)
    figure.update_layout(
        xaxis=dict(title="epoch", **integer_axis(1, longest)),
        yaxis=dict(title="test loss", type="log"),
    )
    return figure


BEST_CURVE_COLOURS = {"train": "#1f77b4", "test": "#ff7f0e"}


def _best_curves_figure(best: FrozenTrial) -> go.Figure:
    """Loss above, accuracy in % below, on one epoch axis; the best epoch marked on both."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    epochs = list(range(1, len(_curve(best, "test_loss")) + 1))
    for row, metric, scale in ((1, "loss", 1.0), (2, "accuracy", 100.0)):
        for split, colour in BEST_CURVE_COLOURS.items():
            values = _curve(best, f"{split}_{metric}")
            figure.add_scatter(
                x=epochs,
                y=[None if v is None else v * scale for v in values],
                name=split,
                legendgroup=split,
                showlegend=row == 1,
                mode="lines",
                line=dict(color=colour),
                row=row,
                col=1,
            )
    best_epoch = TrialRecord.from_trial(best).best_epoch
    if best_epoch is not None:
        figure.add_vline(x=best_epoch, line_dash="dot", line_color="#555", row="all", col=1)
        figure.add_annotation(
            x=best_epoch,
            y=1,
            xref="x",
            yref="paper",
            yanchor="bottom",
            text=f"best epoch {best_epoch}",
            showarrow=False,
        )
    figure.update_yaxes(title="loss", type="log", row=1, col=1)
    figure.update_yaxes(title="accuracy (%)", row=2, col=1)
    figure.update_xaxes(**integer_axis(1, max(epochs, default=1)))
    figure.update_xaxes(title="epoch", row=2, col=1)
    return figure


def _importance(study: optuna.Study, complete: list[FrozenTrial]) -> str:
    if len(complete) < 3:
        return "<p>Needs at least 3 completed trials.</p>"
    try:
        # Random-forest impurity: 0.1 s on 1,000 trials, where fANOVA took 9 s.
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.MeanDecreaseImpurityImportanceEvaluator(n_trees=64, seed=0),
        )
    except (RuntimeError, ValueError) as error:
        return f"<p>Not available: {html.escape(str(error))}</p>"
    figure = go.Figure(go.Bar(x=list(importances.values()), y=list(importances), orientation="h"))
    figure.update_layout(xaxis_title="importance (mean decrease in impurity)")
    return figure_html(figure)


def _parallel_figure(complete: list[FrozenTrial]) -> go.Figure:
    if not complete:
        return go.Figure()
    losses = [t.value for t in complete]
    rates = [t.params.get("learning_rate", 1.0) for t in complete]
    log_rates = [math.log10(rate) for rate in rates]
    # Drawn on a log10 scale, labelled in learning rates: ticks at 1, 2 and 5 × 10^k.
    rate_ticks = [
        m * 10.0**k
        for k in range(math.floor(min(log_rates)), math.ceil(max(log_rates)) + 1)
        for m in (1, 2, 5)
        if min(rates) <= m * 10.0**k <= max(rates)
    ] or sorted(set(rates))
    batch_sizes = [t.params.get("batch_size", 0) for t in complete]
    best_epochs = [TrialRecord.from_trial(t).best_epoch or 0 for t in complete]
    dimensions = [
        dict(
            label="learning rate (log scale)",
            values=log_rates,
            tickvals=[math.log10(tick) for tick in rate_ticks],
            ticktext=[f"{tick:g}" for tick in rate_ticks],
        ),
        dict(label="batch size", values=batch_sizes, tickvals=sorted(set(batch_sizes))),
    ]
    if any("p_dropout" in t.params for t in complete):
        dimensions.append(
            dict(label="dropout", values=[t.params.get("p_dropout", 0.0) for t in complete])
        )
    for name in EXTRA_PARAMS:  # what a search space tuned besides the seed's three
        values = [t.params.get(name) for t in complete]
        if not all(value is not None for value in values):
            continue
        if name in FLAG_PARAMS:  # an axis of two ticks, off and on
            numbers = [int(bool(value)) for value in values]
            dimensions.append(
                dict(label=name, values=numbers, tickvals=[0, 1], ticktext=["off", "on"])
            )
        else:
            dimensions.append(dict(label=name.replace("_", " "), values=values))
    dimensions += [
        dict(
            label="best epoch",
            values=best_epochs,
            tickvals=integer_ticks(min(best_epochs), max(best_epochs)) or best_epochs[:1],
        ),
        dict(label="test loss", values=losses),
    ]
    return go.Figure(
        go.Parcoords(
            line=dict(color=losses, colorscale="Viridis_r", showscale=True), dimensions=dimensions
        )
    )
