"""What the queue reads of a study in one query each: counts by state, the retries' lineage, a
trial by number, and the RUNNING trials that never sent a heartbeat (the stale ones are Optuna's
own check: optuna_private.stale_trial_ids)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpo.workqueue.optuna_private import (
    FIXED_PARAMS_ATTR,
    RETRY_HISTORY_ATTR,
    TrialModel,
    TrialSystemAttributeModel,
    database,
    retried,
    session,
    study_id,
    study_storage,
)


def count_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    """How many of the study's trials are in `states`: one indexed count, where the trial cache
    would read them all (and a worker's cache lists no WAITING trial)."""
    storage = database(study_storage(study))
    if storage is None:
        return len(study.get_trials(deepcopy=False, states=states))
    key_of_study = study_id(study)

    def query() -> int:
        with session(storage) as opened:
            return int(
                opened.query(sqlalchemy.func.count(TrialModel.trial_id))
                .filter(TrialModel.study_id == key_of_study, TrialModel.state.in_(states))
                .scalar()
            )

    return retried(storage, query, "count trials")


def retry_histories(study: optuna.Study) -> list[list[int]]:
    """The retry history of every trial of the study that is a retry, WAITING ones included:
    one query of the retries' attribute rows, not of every trial."""
    storage = database(study_storage(study))
    if storage is None:
        return [
            RetryHeartbeatStaleTrialCallback.retry_history(t)
            for t in study.get_trials(deepcopy=False)
        ]
    key_of_study = study_id(study)

    def query() -> list[list[int]]:
        with session(storage) as opened:
            rows = (
                opened.query(TrialSystemAttributeModel.value_json)
                .join(TrialModel)
                .filter(
                    TrialModel.study_id == key_of_study,
                    TrialSystemAttributeModel.key == RETRY_HISTORY_ATTR,
                )
                .all()
            )
            return [list(json.loads(row[0])) for row in rows]

    return retried(storage, query, "read the retries")


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """The study's trial `number` as the database holds it now."""
    storage = study_storage(study)
    return storage.get_trial(
        storage.get_trial_id_from_study_id_trial_number(study_id(study), number)
    )


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was queued with; its drawn ones if it was not queued."""
    return dict(trial.system_attrs.get(FIXED_PARAMS_ATTR, trial.params))


# Optuna's tables: a RUNNING trial with no row in trial_heartbeats never sent a heartbeat.
_ORPHANS = sqlalchemy.text(
    "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
    "WHERE t.study_id = :study_id AND t.state = 'RUNNING' AND h.trial_id IS NULL "
    "AND t.datetime_start < :cutoff"
)


def orphaned_trial_ids(storage: RDBStorage, study: int, grace_s: float) -> list[int]:
    """RUNNING trials that never sent a heartbeat and started over `grace_s` seconds ago.

    Optuna's stale check (`stale_trial_ids`) only sees trials with a heartbeat row; a worker
    killed between taking a trial and its first heartbeat leaves a RUNNING trial that no check
    would ever retry.
    """

    def query() -> list[int]:
        # Optuna stores datetime_start as the worker's naive local time.
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace_s)
        with storage.engine.connect() as connection:
            rows = connection.execute(_ORPHANS, {"study_id": study, "cutoff": cutoff})
            return [int(row[0]) for row in rows]

    return retried(storage, query, "look for trials that never sent a heartbeat")
