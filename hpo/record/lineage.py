"""A retry's lineage: which trial a retry stands for, so that it resumes that trial's checkpoint.

Optuna's retry callbacks record it, and read it through their public API (marked experimental
since Optuna 2.8 and unchanged since; the work queue's contract test watches it).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial


def lineage(trial: FrozenTrial) -> int:
    """The number of the first trial of `trial`'s chain of retries: what its checkpoint is
    keyed by, so that a retry finds the checkpoint of the trial it retries."""
    root = retried_trial_number(trial)
    return trial.number if root is None else root


def is_retry(trial: FrozenTrial) -> bool:
    return retried_trial_number(trial) is not None


def retried_trial_number(trial: FrozenTrial) -> int | None:
    """The number of the first trial of the retry chain that `trial` belongs to, if it is a
    retry."""
    with _experimental_since_2_8():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the trials that `trial` retries, oldest first."""
    with _experimental_since_2_8():
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


@contextmanager
def _experimental_since_2_8() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
