"""What a confirmation study (hpo.confirm.companion) says: per configuration, the mean and a 95%
interval of its best loss, test accuracy and best epoch over the new seeds, and whether the
leader is distinguishable from the runner-up.

The intervals are Student's t intervals of the mean over the seeds that completed. The leader is
distinguishable when Welch's 95% interval of the difference between its mean loss and the
runner-up's excludes zero. A seed that diverged (PRUNED) is counted apart, not averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.confirm.companion import PLAN_ATTR, confirmation_of
from hpo.record.summary import format_params
from hpo.record.trial_record import TrialRecord
from hpo.study.queue import load_config

if TYPE_CHECKING:
    import plotly.graph_objects as go

CONFIDENCE = 0.95


def _t_quantile(df: float) -> float:
    from scipy.stats import t  # scipy comes with scikit-learn; only confirmations need it

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


@dataclass(frozen=True, kw_only=True)
class Interval:
    mean: float
    low: float  # NaN with fewer than two values
    high: float

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


LOSS_RANGE = (0.0, math.inf)
PERCENT_RANGE = (0.0, 100.0)
EPOCH_RANGE = (1.0, math.inf)


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> Interval:
    """The mean, and its 95% Student's t interval, cut to `bounds`: with two or three seeds the
    interval is wide, and a loss below 0 or an accuracy above 100% is a value the quantity
    cannot take (the mean lies in those bounds, so the cut interval still holds it)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean=mean, low=math.nan, high=math.nan)
    half = _t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    low, high = bounds
    return Interval(mean=mean, low=max(low, mean - half), high=min(high, mean + half))


def difference_interval(lower: Sequence[float], higher: Sequence[float]) -> Interval:
    """mean(higher) − mean(lower), with Welch's 95% interval (unequal variances)."""
    difference = statistics.fmean(higher) - statistics.fmean(lower)
    if len(lower) < 2 or len(higher) < 2:
        return Interval(mean=difference, low=math.nan, high=math.nan)
    a = statistics.variance(lower) / len(lower)
    b = statistics.variance(higher) / len(higher)
    if a + b == 0:
        return Interval(mean=difference, low=difference, high=difference)
    df = (a + b) ** 2 / (a**2 / (len(lower) - 1) + b**2 / (len(higher) - 1))
    half = _t_quantile(df) * math.sqrt(a + b)
    return Interval(mean=difference, low=difference - half, high=difference + half)


@dataclass(frozen=True, kw_only=True)
class ConfirmedConfig:
    trial: int  # the search's trial that it retrains
    params: dict[str, Any]
    original_loss: float | None  # that trial's own best loss
    losses: list[float]  # best loss of each completed seed
    test_losses: list[float]
    accuracies: list[float]
    epochs: list[int]
    diverged: int  # seeds that diverged or were stopped (PRUNED)

    @property
    def loss(self) -> Interval | None:
        return mean_interval(self.losses, LOSS_RANGE) if self.losses else None


@dataclass(frozen=True, kw_only=True)
class Confirmation:
    study: str  # the confirmation study
    confirms: str
    selected_on: str  # "test" or "validation": which loss the values are
    seeds: list[int]
    finished: int  # (trial, seed) runs that ended
    total: int
    configs: list[ConfirmedConfig]  # the leader first: lowest mean loss

    @property
    def done(self) -> bool:
        return self.finished == self.total

    @property
    def difference(self) -> Interval | None:
        """Runner-up's mean loss minus the leader's, with its 95% interval."""
        ranked = [c for c in self.configs if c.losses]
        if len(ranked) < 2:
            return None
        return difference_interval(ranked[0].losses, ranked[1].losses)

    @property
    def distinguishable(self) -> bool | None:
        """Whether the leader beats the runner-up at 95%; None when it cannot be told (fewer
        than two configurations, or fewer than two completed seeds of either)."""
        difference = self.difference
        if difference is None or math.isnan(difference.low):
            return None
        return difference.low > 0


def load_confirmation(storage: optuna.storages.BaseStorage, study_name: str) -> Confirmation | None:
    """The study's confirmation, or None if `hpo confirm` never ran on it."""
    name = confirmation_of(storage, study_name)
    if name is None:
        return None
    config = load_config(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    plan = study.user_attrs[PLAN_ATTR]
    searched = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    ended: dict[tuple[int, int], FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        record = TrialRecord.from_trial(trial)
        if record.confirms_trial is not None and record.seed is not None:
            ended[(record.confirms_trial, record.seed)] = trial
    configs = [
        _confirmed(searched[number], [ended[key] for key in ended if key[0] == number])
        for number in plan["trials"]
    ]
    configs.sort(key=lambda c: (not c.losses, c.loss.mean if c.loss else 0.0, c.trial))
    return Confirmation(
        study=name,
        confirms=study_name,
        selected_on=config.selected_on,
        seeds=list(plan["seeds"]),
        finished=len(ended),
        total=len(plan["trials"]) * len(plan["seeds"]),
        configs=configs,
    )


def _confirmed(original: FrozenTrial, runs: list[FrozenTrial]) -> ConfirmedConfig:
    # A COMPLETE run has its value and its best epoch's test loss, accuracy and epoch.
    complete = [t for t in runs if t.state == TrialState.COMPLETE and t.value is not None]
    records = [TrialRecord.from_trial(t) for t in complete]
    return ConfirmedConfig(
        trial=original.number,
        params=dict(original.params),
        original_loss=original.value,
        losses=[t.value for t in complete if t.value is not None],
        test_losses=[r.test_loss_at_best for r in records if r.test_loss_at_best is not None],
        accuracies=[r.test_accuracy for r in records if r.test_accuracy is not None],
        epochs=[r.best_epoch for r in records if r.best_epoch is not None],
        diverged=len(runs) - len(complete),
    )


def confirmation_lines(confirmation: Confirmation) -> list[str]:
    c = confirmation
    lines = [
        f"confirmation of study {c.confirms!r}: its top {len(c.configs)} trials × "
        f"{len(c.seeds)} new seeds ({', '.join(map(str, c.seeds))}) in study {c.study!r}: "
        f"{c.finished} of {c.total} runs finished",
        f"{c.selected_on} loss, test accuracy and best epoch: mean [95% interval] over the seeds",
    ]
    for config in c.configs:
        runs = len(config.losses)
        line = f"  trial {config.trial:>3} {format_params(config.params)} | {runs} runs"
        if config.diverged:
            line += f", {config.diverged} diverged"
        if runs:
            line += (
                f" | loss {mean_interval(config.losses, LOSS_RANGE)}"
                f" | accuracy {_percent(config.accuracies)}%"
                f" | epoch {mean_interval(config.epochs, EPOCH_RANGE)}"
            )
        if config.original_loss is not None:
            line += f" | search: {config.original_loss:.4g}"
        lines.append(line)
    lines.append(verdict(c))
    if not c.done:
        lines.append(
            f"to finish it: hpo worker --study {c.study} (or hpo launch --study {c.study}); "
            "then this command again"
        )
    return lines


def _percent(accuracies: Sequence[float]) -> Interval:
    return mean_interval([100 * a for a in accuracies], PERCENT_RANGE)


def verdict(confirmation: Confirmation) -> str:
    """One sentence: which configuration leads, and whether that is more than seed noise."""
    c = confirmation
    ranked = [config for config in c.configs if config.losses]
    if not ranked:
        return "no run has finished yet"
    leader = f"trial {ranked[0].trial}"
    difference = c.difference
    if difference is None or c.distinguishable is None:
        return f"leader so far: {leader} (too few runs to compare it with the runner-up)"
    runner_up = f"trial {ranked[1].trial}"
    margin = f"runner-up's loss - leader's: {difference}"
    if c.distinguishable:
        return f"leader: {leader}, distinguishable from the runner-up {runner_up} ({margin})"
    return (
        f"leader: {leader}, NOT distinguishable from the runner-up {runner_up} at "
        f"{CONFIDENCE:.0%} ({margin}): the search's ranking of the two is within seed noise"
    )


def confirmation_figure(confirmation: Confirmation) -> go.Figure:
    """Per configuration: each seed's best loss, their mean with its 95% interval, and the
    search's own run of it (which was chosen for being low)."""
    import plotly.graph_objects as go

    ranked = [c for c in confirmation.configs if c.losses]
    labels = [f"trial {c.trial}" for c in ranked]
    figure = go.Figure()
    figure.add_scatter(
        x=[label for c, label in zip(ranked, labels, strict=True) for _ in c.losses],
        y=[loss for c in ranked for loss in c.losses],
        mode="markers",
        name="one seed",
        marker=dict(color="#888", size=7),
    )
    means = [mean_interval(c.losses, LOSS_RANGE) for c in ranked]
    figure.add_scatter(
        x=labels,
        y=[m.mean for m in means],
        mode="markers",
        name=f"mean, {CONFIDENCE:.0%} interval",
        marker=dict(color="#1f77b4", size=12, symbol="diamond"),
        error_y=dict(
            type="data",
            symmetric=False,
            array=[0.0 if math.isnan(m.high) else m.high - m.mean for m in means],
            arrayminus=[0.0 if math.isnan(m.low) else m.mean - m.low for m in means],
        ),
    )
    figure.add_scatter(
        x=labels,
        y=[c.original_loss for c in ranked],
        mode="markers",
        name="the search's run",
        marker=dict(color="#d62728", size=10, symbol="x"),
    )
    figure.update_layout(
        xaxis_title="configuration (the search's trial)",
        yaxis_title=f"best {confirmation.selected_on} loss",
    )
    return figure


def confirmation_table(confirmation: Confirmation) -> list[list[Any]]:
    """Rows for a page: trial, parameters, runs, diverged, then mean and interval of the loss,
    the accuracy and the best epoch."""
    rows = []
    for config in confirmation.configs:
        stats = (
            [
                str(mean_interval(config.losses, LOSS_RANGE)),
                str(_percent(config.accuracies)),
                str(mean_interval(config.epochs, EPOCH_RANGE)),
            ]
            if config.losses
            else [None, None, None]
        )
        rows.append(
            [
                config.trial,
                format_params(config.params),
                len(config.losses),
                config.diverged,
                *stats,
            ]
        )
    return rows


CONFIRMATION_HEADER = [
    "trial",
    "parameters",
    "runs",
    "diverged",
    "loss, mean [95%]",
    "test accuracy %, mean [95%]",
    "best epoch, mean [95%]",
]
