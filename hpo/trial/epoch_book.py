"""A trial's per-epoch bookkeeping, and the seed's patience rule on Optuna's pruner API.

`EpochBook` records each epoch (curves, best epoch so far) and decides whether training stops:
the run diverged, patience ran out, the study's pruner says so, or the epoch budget is spent.

Two different outcomes share `trial.should_prune()`: patience (10 epochs without a lower test loss)
ends a trial COMPLETE with its best loss, because Optuna never picks a PRUNED trial as best; the
optional median/hyperband pruner ends a hopeless trial PRUNED. `PatientPruner(None, patience - 1)`
fires at exactly epoch k + patience when k is the best epoch: it compares the last `patience`
reports with everything before them. The book tells the two apart by the best epoch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    PatientPruner,
    SuccessiveHalvingPruner,
)
from optuna.trial import FrozenTrial

from hpo.trial.writer import TrialWriter
from storage import optuna_internals

if TYPE_CHECKING:  # the study imports the pruner before any torch is needed
    from model.train import EpochMetrics

MEDIAN_STARTUP_TRIALS = 5
MEDIAN_WARMUP_EPOCHS = 5
# Pruners that keep a trial's state (its rungs) in the trial's system attributes.
_RUNG_PRUNERS = (HyperbandPruner, SuccessiveHalvingPruner)


def _patience_rule(patience: int) -> PatientPruner:
    with warnings.catch_warnings():  # experimental since 2.8, and stable in behaviour
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return PatientPruner(None, patience=patience - 1)


class PatienceOrPruner(BasePruner):
    """Prune when patience runs out, or when the wrapped pruner (if any) says so."""

    def __init__(self, patience: int, wrapped: BasePruner | None = None) -> None:
        self.patience = patience
        self._patience = _patience_rule(patience)
        self._wrapped = wrapped

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if self._patience.prune(study, trial):
            return True
        return self._wrapped is not None and self._wrapped.prune(study, trial)


class PatientHyperbandPruner(HyperbandPruner):
    """Hyperband, and patience: a `HyperbandPruner` itself, not a wrapper around one.

    Optuna's samplers (TPE among them) see only the trials of a trial's own Hyperband bracket when,
    and only when, the study's pruner is a `HyperbandPruner`; a wrapper would make TPE sample from
    every bracket at once.
    """

    def __init__(self, patience: int, max_epochs: int) -> None:
        super().__init__(min_resource=1, max_resource=max_epochs)
        self.patience = patience
        self._patience = _patience_rule(patience)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self._patience.prune(study, trial) or super().prune(study, trial)


def build_pruner(name: str, patience: int, max_epochs: int) -> BasePruner:
    if name == "hyperband":
        return PatientHyperbandPruner(patience, max_epochs)
    wrapped: BasePruner | None = None
    if name == "median":
        wrapped = MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS
        )
    return PatienceOrPruner(patience, wrapped)


CURVE_KEYS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "test_top5",
    "learning_rate",
    "seconds",
)
VALIDATION_KEYS = ("val_loss", "val_accuracy")  # curves of a study with a validation split


@dataclass(kw_only=True)
class EpochBook:
    """A trial's running bookkeeping: best epoch so far, curves, and why it stopped."""

    trial: optuna.Trial
    patience: int
    max_epochs: int
    best: EpochMetrics | None = None
    epochs_run: int = 0
    stop_reason: str | None = None
    curves: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in CURVE_KEYS})
    # Writes reports and live curves in the background; None: `trial.report` and
    # `trial.should_prune`, each a database round trip, in the training thread.
    writer: TrialWriter | None = None
    # The trial as the pruner sees it: read from the database at the first epoch (each epoch
    # with a pruner that keeps rungs in the trial's attributes); its intermediate values are
    # then the book's.
    pruning_view: FrozenTrial | None = None
    _reported: dict[int, float] = field(default_factory=dict)

    def on_epoch(self, metrics: EpochMetrics) -> bool:
        """Record one epoch; True stops training."""
        self.epochs_run = metrics.epoch
        for key in CURVE_KEYS:
            self.curves[key].append(getattr(metrics, key))
        if metrics.val_loss is not None:
            for key in VALIDATION_KEYS:
                self.curves.setdefault(key, []).append(getattr(metrics, key))
        if self.writer is not None:
            self.writer.publish(self.json_curves)
        if not metrics.finite:
            self.stop_reason = "diverged"
            return True
        if metrics.better_than(self.best):
            self.best = metrics
        if self._report_and_should_prune(metrics.epoch, metrics.selection_loss):
            self.stop_reason = "patience" if self.patience_spent(metrics.epoch) else "pruned"
            return True
        if metrics.epoch >= self.max_epochs:
            self.stop_reason = "max_epochs"
            return True
        return False

    def patience_spent(self, epoch: int) -> bool:
        """Whether `patience` epochs up to `epoch` brought no lower selection loss."""
        return self.best is not None and epoch - self.best.epoch >= self.patience

    def user_attrs(self) -> dict[str, object]:
        attrs: dict[str, object] = {
            "epochs_run": self.epochs_run,
            "stop_reason": self.stop_reason,
            "curves": self.json_curves(),
        }
        if self.best is not None:
            attrs.update(
                best_epoch=self.best.epoch,
                test_accuracy=self.best.test_accuracy,
                test_top5=self.best.test_top5,
                train_loss=self.best.train_loss,
                train_accuracy=self.best.train_accuracy,
            )
            if self.best.val_loss is not None:  # the value is then the validation loss
                attrs.update(test_loss=self.best.test_loss, val_accuracy=self.best.val_accuracy)
        return attrs

    def _report_and_should_prune(self, epoch: int, loss: float) -> bool:
        if self.writer is None:
            self.trial.report(loss, epoch)
            return self.trial.should_prune()
        self.writer.report(epoch, loss)
        # The study's own pruner decides, given the trial with the values reported so far: what
        # `trial.should_prune` does, less reading the trial back from the database. Successive
        # halving (Hyperband) records the rungs a trial has passed in its system attributes as
        # it decides, so with it the trial is read back each epoch: a view read once would keep
        # the trial at its first rung, comparing each new value there.
        pruner = self.trial.study.pruner
        if self.pruning_view is None or isinstance(pruner, _RUNG_PRUNERS):
            self.pruning_view = self.trial.storage.get_trial(optuna_internals.trial_id(self.trial))
        self._reported[epoch] = loss
        self.pruning_view.intermediate_values = self._reported
        return pruner.prune(self.trial.study, self.pruning_view)

    def json_curves(self) -> dict[str, list[float | None]]:
        return {key: [_json_float(v) for v in values] for key, values in self.curves.items()}


def _json_float(value: float) -> float | None:
    # NaN and inf are not JSON; a diverged epoch is stored as null.
    return value if math.isfinite(value) else None
