"""A retry's lineage: which trial a retry stands for, so that it resumes that trial's checkpoint."""

from __future__ import annotations

from optuna.trial import FrozenTrial

from storage import optuna_internals


def lineage(trial: FrozenTrial) -> int:
    """The number of the first trial of `trial`'s chain of retries: what its checkpoint is
    keyed by, so that a retry finds the checkpoint of the trial it retries."""
    root = optuna_internals.retried_trial_number(trial)
    return trial.number if root is None else root


def is_retry(trial: FrozenTrial) -> bool:
    return optuna_internals.retried_trial_number(trial) is not None
