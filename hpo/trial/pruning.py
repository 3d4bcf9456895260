"""The seed's patience rule on Optuna's pruner API, with an optional pruner for hopeless trials.

Two different outcomes share `trial.should_prune()`: patience (10 epochs without a lower test loss)
ends a trial COMPLETE with its best loss, because Optuna never picks a PRUNED trial as best; the
optional median/hyperband pruner ends a hopeless trial PRUNED. `PatientPruner(None, patience - 1)`
fires at exactly epoch k + patience when k is the best epoch: it compares the last `patience`
reports with everything before them.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, PatientPruner

MEDIAN_STARTUP_TRIALS = 5
MEDIAN_WARMUP_EPOCHS = 5


class PatienceOrPruner(BasePruner):
    """Prune when patience runs out, or when the wrapped pruner (if any) says so."""

    def __init__(self, patience: int, wrapped: BasePruner | None = None) -> None:
        self.patience = patience
        with warnings.catch_warnings():  # experimental since 2.8, and stable in behaviour
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._patience = PatientPruner(None, patience=patience - 1)
        self._wrapped = wrapped

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if self._patience.prune(study, trial):
            return True
        return self._wrapped is not None and self._wrapped.prune(study, trial)


def build_pruner(name: str, patience: int, max_epochs: int) -> PatienceOrPruner:
    wrapped: BasePruner | None
    if name == "median":
        wrapped = MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS
        )
    elif name == "hyperband":
        wrapped = HyperbandPruner(min_resource=1, max_resource=max_epochs)
    else:
        wrapped = None
    return PatienceOrPruner(patience, wrapped)
