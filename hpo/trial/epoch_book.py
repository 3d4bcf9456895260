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

import warnings
from dataclasses import dataclass, field

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    PatientPruner,
    SuccessiveHalvingPruner,
)
from optuna.trial import FrozenTrial

from hpo.record.trial_record import Curves, TrialRecord, curves_of
from hpo.trial.writer import TrialWriter
from hpo.workqueue.optuna_private import trial_id
from hpo.workqueue.trial_writes import with_intermediate_values
from model.metrics import EpochHistory, EpochMetrics

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


@dataclass(kw_only=True)
class EpochBook:
    """A trial's running bookkeeping over the run's one history: the training loop adds each
    epoch to `history` (and learns there whether it is the best so far); the book judges it,
    reports it to the trial, and says why the run stopped."""

    trial: optuna.Trial
    patience: int
    max_epochs: int
    history: EpochHistory = field(default_factory=EpochHistory)
    stop_reason: str | None = None
    # Writes reports and live curves in the background; None: `trial.report` and
    # `trial.should_prune`, each a database round trip, in the training thread.
    writer: TrialWriter | None = None
    # The trial as the pruner sees it: read from the database at the first epoch (each epoch
    # with a pruner that keeps rungs in the trial's attributes); its intermediate values are
    # then the history's.
    pruning_view: FrozenTrial | None = None

    @property
    def best(self) -> EpochMetrics | None:
        return self.history.best

    @property
    def epochs_run(self) -> int:
        return self.history.epochs_run

    def on_epoch(self) -> bool:
        """Judge the epoch that the training loop has just added to the history; True stops
        training."""
        metrics = self.history.last
        assert metrics is not None, "the training loop adds the epoch first"
        if self.writer is not None:
            self.writer.publish(self.json_curves)
        if not metrics.finite:
            self.stop_reason = "diverged"
            return True
        if self._report_and_should_prune(metrics.epoch, metrics.selection_loss):
            self.stop_reason = "patience" if self.patience_spent(metrics.epoch) else "pruned"
            return True
        if metrics.epoch >= self.max_epochs:
            self.stop_reason = "max_epochs"
            return True
        return False

    def replay(self) -> bool:
        """Judge again, in order, the epochs that the history holds already (restored from a
        checkpoint), reporting each to the trial; True if one of them stops training, and the
        history then ends at that epoch."""
        for metrics in self.history.take_all():
            self.history.add(metrics)
            if self.on_epoch():
                return True
        return False

    def patience_spent(self, epoch: int) -> bool:
        """Whether `patience` epochs up to `epoch` brought no lower selection loss."""
        return self.best is not None and epoch - self.best.epoch >= self.patience

    def record(self) -> TrialRecord:
        return TrialRecord.of_run(self.history, self.stop_reason)

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
            self.pruning_view = self.trial.storage.get_trial(trial_id(self.trial))
        reported = {m.epoch: m.selection_loss for m in self.history}
        view = with_intermediate_values(self.pruning_view, reported)
        return pruner.prune(self.trial.study, view)

    def json_curves(self) -> Curves:
        return curves_of(self.history)
