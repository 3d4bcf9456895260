"""Writes to a running trial, refused as `TakenOver` once another worker has finished it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.workqueue.optuna_private import (
    ARTIFACTS_ATTR_PREFIX,
    database,
    remember_user_attrs,
    retried,
    session,
    set_attr_in_session,
    trial_id,
)
from storage.errors import TakenOver, taken_over_if_finished


def set_trial_attrs(
    trial: optuna.Trial,
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write several attributes of a running trial in one transaction, where `set_user_attr`
    takes one each (a lock-free read of the trial, a write and a commit; on PostgreSQL also a
    statement of session limits). Raises TakenOver, writing nothing, if the trial is finished:
    another worker failed it as stale. On a storage that is not a database, one call per
    attribute."""
    write_trial_attrs(trial.storage, trial_id(trial), user_attrs, system_attrs)
    remember_user_attrs(trial, dict(user_attrs))


def write_trial_attrs(
    cache: BaseStorage,
    key: int,
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any] | None = None,
) -> None:
    """`set_trial_attrs` for the trial whose storage key is `key`, through the storage `cache`
    (a study's trial cache or a database)."""
    storage = database(cache)
    system_attrs = system_attrs or {}
    with taken_over_if_finished(key):
        if storage is None:
            for name, value in user_attrs.items():
                cache.set_trial_user_attr(key, name, value)
            for name, value in system_attrs.items():
                cache.set_trial_system_attr(key, name, value)
        else:
            database_storage = storage

            def write() -> None:
                # Upserts: an attempt that committed before its connection was cut is harmless.
                with session(database_storage, commit=True) as opened:
                    for system, attrs in ((False, user_attrs), (True, system_attrs)):
                        for name, value in attrs.items():
                            set_attr_in_session(
                                database_storage,
                                opened,
                                system=system,
                                trial=key,
                                key=name,
                                value=value,
                            )

            retried(storage, write, "set_trial_attrs")


def check_still_running(trial: optuna.Trial) -> None:
    """Raise TakenOver if another worker has finished the trial. Reporting to such a trial
    raises nothing (Optuna writes an intermediate value without checking the state), so a
    running trial asks from time to time."""
    if trial.storage.get_trial(trial_id(trial)).state != TrialState.RUNNING:
        raise TakenOver(f"trial {trial.number} was finished by another worker")


def with_intermediate_values(trial: FrozenTrial, values: dict[int, float]) -> FrozenTrial:
    """`trial` (a copy read for the pruner) holding `values` as its reports: what the study's
    pruner judges, without reading the trial back. Optuna's pruners read a trial's reports
    through `intermediate_values` and `last_step` only; the contract test checks that a pruner
    then decides as on the trial in the database."""
    trial.intermediate_values = values
    return trial


def artifact_attr(meta: dict[str, Any]) -> dict[str, str]:
    """The system attribute that lists an artifact among a trial's artifacts, as
    `optuna.artifacts.upload_artifact` writes it (optuna-dashboard shows it), for a file that is
    not uploaded: written with `set_trial_attrs`."""
    return {ARTIFACTS_ATTR_PREFIX + meta["artifact_id"]: json.dumps(meta)}
