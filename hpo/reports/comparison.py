"""`hpo report --study A --study B …`: several studies side by side on one page.

It answers "did TPE find the grid's answer for less?" and "what did each stage of the seed add?":
the best loss each study had found against the training epochs it had spent so far (epochs are
the GPU time of this network, whatever the machine), and each study's best configuration.

A study's spending is counted in the order its trials finished: every finished trial's epochs
(COMPLETE and PRUNED alike: a pruned trial cost its epochs too), and its best is the lowest
value of the COMPLETE trials so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from hpo.figures.page import figure_html, html_page, section, table_html
from hpo.figures.ticks import integer_axis
from hpo.record.config import StudyConfig
from hpo.record.summary import format_params
from hpo.record.trial_record import TrialRecord
from hpo.study.queue import best_trial, load_config

WITHIN = 0.01  # "reached the best": within 1% of the lowest loss of all the studies


@dataclass(frozen=True, kw_only=True)
class Spending:
    """A study's best loss after each finished trial, against the epochs spent until then."""

    epochs: list[int]  # cumulative, one per finished trial in order of finishing
    seconds: list[float]  # cumulative training seconds (sum of epoch times)
    best: list[float | None]  # lowest COMPLETE value so far (None before the first)

    def epochs_to_reach(self, target: float) -> int | None:
        """Epochs spent when the study's best first came within `target`; None if never."""
        for epochs, best in zip(self.epochs, self.best, strict=True):
            if best is not None and best <= target:
                return epochs
        return None


def spending(trials: list[FrozenTrial]) -> Spending:
    finished = sorted(
        (
            t
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete
        ),
        key=lambda t: (t.datetime_complete, t.number),
    )
    epochs, seconds, best = [], [], []
    spent, took, lowest = 0, 0.0, None
    for trial in finished:
        record = TrialRecord.from_trial(trial)
        spent += int(record.epochs_run or 0)
        took += record.seconds
        if trial.state == TrialState.COMPLETE and trial.value is not None and (
            lowest is None or trial.value < lowest
        ):
            lowest = trial.value
        epochs.append(spent)
        seconds.append(took)
        best.append(lowest)
    return Spending(epochs=epochs, seconds=seconds, best=best)


def build_comparison(storage: optuna.storages.BaseStorage, study_names: list[str]) -> str:
    configs = {name: load_config(storage, name) for name in study_names}
    studies = {name: optuna.load_study(study_name=name, storage=storage) for name in study_names}
    trials = {name: study.get_trials(deepcopy=False) for name, study in studies.items()}
    spent = {name: spending(trials[name]) for name in study_names}
    finals = [s.best[-1] for s in spent.values() if s.best and s.best[-1] is not None]
    target = min(finals) * (1 + WITHIN) if finals else None
    selected_on = {config.selected_on for config in configs.values()}
    note = (
        ""
        if len(selected_on) == 1
        else "<p><b>These studies choose on different losses (test and validation): their "
        "values do not compare directly.</b></p>"
    )
    sections = [
        section(
            "Best loss found against epochs spent",
            note + figure_html(_spending_figure(spent, " / ".join(sorted(selected_on)))),
        ),
        section(
            "Each study's best configuration",
            table_html(
                COMPARISON_HEADER,
                [
                    _row(name, configs[name], studies[name], spent[name], target)
                    for name in study_names
                ],
                row_id="compare",
            ),
        ),
    ]
    subtitle = (
        f"{len(study_names)} studies: {', '.join(study_names)}; "
        f"written {time.strftime('%Y-%m-%d %H:%M')}"
    )
    return html_page("hpo report: comparison", subtitle, sections)


COMPARISON_HEADER = [
    "study",
    "sampler",
    "preset",
    "dataset",
    "trials finished",
    "epochs spent",
    "training s",
    "best loss",
    "best trial",
    "parameters",
    "best epoch",
    "test accuracy",
    f"epochs to within {WITHIN:.0%} of the best of all",
]


def _row(
    name: str,
    config: StudyConfig,
    study: optuna.Study,
    spent: Spending,
    target: float | None,
) -> list[object]:
    best = best_trial(study)
    record = TrialRecord.from_trial(best) if best else None
    return [
        name,
        config.sampler,
        config.preset,
        config.dataset,
        len(spent.epochs),
        spent.epochs[-1] if spent.epochs else 0,
        round(spent.seconds[-1], 1) if spent.seconds else 0.0,
        best.value if best else None,
        best.number if best else None,
        format_params(best.params) if best else None,
        record.best_epoch if record else None,
        f"{100 * (record.test_accuracy or 0.0):.2f}%" if record else None,
        spent.epochs_to_reach(target) if target is not None else None,
    ]


def _spending_figure(spent: dict[str, Spending], loss_name: str) -> go.Figure:
    figure = go.Figure()
    for name, study in spent.items():
        points = [(e, b) for e, b in zip(study.epochs, study.best, strict=True) if b is not None]
        figure.add_scatter(
            x=[e for e, _ in points],
            y=[b for _, b in points],
            mode="lines+markers",
            line_shape="hv",
            name=name,
        )
    spent_most = max((study.epochs[-1] for study in spent.values() if study.epochs), default=1)
    figure.update_layout(
        xaxis=dict(
            title="training epochs spent (all finished trials)", **integer_axis(0, spent_most)
        ),
        yaxis_title=f"best {loss_name} loss so far",
        yaxis_type="log",
    )
    return figure
