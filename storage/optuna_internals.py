"""Every use of Optuna's private internals, in one place.

The exactly-once queue, the retry lineage and the stale-trial checks need a few things that
Optuna (5.x) does not make public: popping one queued trial, the ids that its storage keys rows
by, the heartbeat check, the names of the attributes its retry callbacks and artifacts write, and
its table layout (for trials that never sent a heartbeat). Nothing else in the project touches a
private Optuna name: when an Optuna release changes one of these, this module and its contract
test (tests/storage/test_optuna_internals.py, run on SQLite, PostgreSQL and MariaDB) are where it
shows, before a queue silently runs a grid point twice.

Public APIs are used wherever they exist: `RetryHeartbeatStaleTrialCallback.retried_trial_number`
and `retry_history` for the retry lineage (the callback that `hpo.study.recovery` queues retries
with; `RetryFailedTrialCallback`, deprecated since Optuna 4.9, is its subclass),
`Study.enqueue_trial` for queueing.
"""

from __future__ import annotations

import copy
import datetime
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from storage.errors import TakenOver
from storage.retries import WaitsOutOutages

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore as ArtifactStore

__all__ = [
    "PRIVATE_STORAGE_READS",
    "ArtifactStore",
    "artifact_attr",
    "check_still_running",
    "frozen_when_asked",
    "orphaned_trial_ids",
    "pop_waiting_trial_id",
    "queued_params",
    "retried_trial_number",
    "retry_history",
    "run_one_trial",
    "sampler_view",
    "set_trial_attrs",
    "stale_trial_ids",
    "study_id",
    "suggest_fixed",
    "take_waiting_trial",
    "taken_over_if_finished",
    "trial_id",
    "with_intermediate_values",
]

# RDBStorage's private read methods that a worker reaches through Optuna's own code (its trial
# cache, `best_trial`, the heartbeat check): storage.resilient retries them through outages.
PRIVATE_STORAGE_READS = ("_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")

T = TypeVar("T")
_FIXED_PARAMS_ATTR = "fixed_params"  # what `enqueue_trial` stores in a queued trial
_ARTIFACTS_ATTR_PREFIX = "artifacts:"  # where `optuna.artifacts.upload_artifact` lists a file
TAKEN_BY_ATTR = "hpo:taken_by"  # which worker took a queued trial (system attribute)


@contextmanager
def taken_over_if_finished(trial_id: int) -> Iterator[None]:
    """Optuna's error for a write to a finished trial, as `TakenOver`: the one place it turns."""
    try:
        yield
    except TakenOver:
        raise
    except UpdateFinishedTrialError as error:
        raise TakenOver(f"trial id {trial_id} was finished by another worker") from error


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's key of a trial (unique across studies; `trial.number` is per study)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def pop_waiting_trial_id(study: optuna.Study) -> int | None:
    """Take one WAITING trial and make it RUNNING, or None when none is queued.

    The storage makes the WAITING → RUNNING change under a row lock (PostgreSQL, MySQL) and skips
    a trial that another process took first, so each queued trial is popped by exactly one
    caller. As in `Study.ask`, the list of the study's trials that samplers read during a trial
    is dropped first, so that the pop and the next trial's sampling see every trial as it is now.
    (Optuna's pop reads every queued trial whole, through its trial cache. Asking the database
    for the queued ids alone would be cheaper, but the cache must have read a trial before a
    parameter can be suggested in it.)
    """
    study._thread_local.cached_all_trials = None
    return study._pop_waiting_trial_id()


def frozen_when_asked(trial: optuna.Trial) -> FrozenTrial:
    """A copy of the trial as Optuna read it when the `Trial` was made, with the parameters
    suggested since: its queued parameters and retry lineage without another database read."""
    return copy.deepcopy(trial._cached_frozen_trial)


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
    storage = _database(trial.storage)
    key_of_trial = trial._trial_id
    system_attrs = system_attrs or {}
    with taken_over_if_finished(key_of_trial):
        if storage is None:
            for key, value in user_attrs.items():
                trial.storage.set_trial_user_attr(key_of_trial, key, value)
            for key, value in system_attrs.items():
                trial.storage.set_trial_system_attr(key_of_trial, key, value)
        else:
            # Upserts: an attempt that committed before its connection was cut is harmless.
            _retried(
                storage,
                lambda: _write_attrs(storage, key_of_trial, user_attrs, system_attrs),
                "set_trial_attrs",
            )
    trial._cached_frozen_trial.user_attrs.update(user_attrs)  # what `set_user_attr` keeps too


def check_still_running(trial: optuna.Trial) -> None:
    """Raise TakenOver if another worker has finished the trial. Reporting to such a trial
    raises nothing (Optuna writes an intermediate value without checking the state), so a
    running trial asks from time to time."""
    if trial.storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
        raise TakenOver(f"trial {trial.number} was finished by another worker")


def with_intermediate_values(trial: FrozenTrial, values: dict[int, float]) -> FrozenTrial:
    """`trial` (a copy read for the pruner) holding `values` as its reports: what the study's
    pruner judges, without reading the trial back. Optuna's pruners read a trial's reports
    through `intermediate_values` and `last_step` only, and `intermediate_values` can be set;
    the contract test checks that a pruner then decides as on the trial in the database."""
    trial.intermediate_values = values
    return trial


def run_one_trial(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]],
) -> None:
    """One trial through `Study.optimize`, which alone runs Optuna's heartbeat thread and its
    stale-trial check; an exception raised in the objective (after Optuna records the trial as
    FAIL) or in `study.ask` comes out as is. `Study.optimize` calls `ask` outside the try block
    around the objective, so an `ask` that finds no work raises before any trial exists (the
    contract test checks it)."""
    study.optimize(objective, n_trials=1, catch=(), callbacks=callbacks)


def _write_attrs(
    storage: RDBStorage,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
) -> None:
    with _create_scoped_session(storage.scoped_session, True) as session:
        for table, attrs in (
            (models.TrialUserAttributeModel, user_attrs),
            (models.TrialSystemAttributeModel, system_attrs),
        ):
            for key, value in attrs.items():
                storage._set_trial_attr_without_commit(session, table, trial_id, key, value)


def take_waiting_trial(storage: RDBStorage, trial_id: int, taker: str) -> bool:
    """WAITING → RUNNING, as `RDBStorage.set_trial_state_values(RUNNING)` does (under the row's
    lock, with the start time), and in the same transaction the system attribute TAKEN_BY_ATTR =
    `taker`. True when the trial is the taker's now: taken by this call, or found RUNNING under
    the taker's own mark, which is an earlier attempt that committed but whose reply was lost
    (a retried call then knows its own success, where Optuna's answers False and the trial
    would stay RUNNING with no one running it). False for a trial that another took or that is
    finished."""
    with _create_scoped_session(storage.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        if trial.state == TrialState.RUNNING:
            mark = (
                session.query(models.TrialSystemAttributeModel.value_json)
                .filter_by(trial_id=trial_id, key=TAKEN_BY_ATTR)
                .scalar()
            )
            return mark is not None and json.loads(mark) == taker
        if trial.state != TrialState.WAITING:
            return False
        trial.state = TrialState.RUNNING
        trial.datetime_start = datetime.datetime.now()  # local time, as Optuna writes it
        storage._set_trial_attr_without_commit(
            session, models.TrialSystemAttributeModel, trial_id, TAKEN_BY_ATTR, taker
        )
    return True


def suggest_fixed(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Suggest a parameter from a distribution object (what `Study.ask(fixed_distributions)`
    does)."""
    return trial._suggest(name, distribution)


def sampler_view(study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
    """The study as Optuna's samplers see it when they sample `trial`: with a `HyperbandPruner`,
    only the trials of `trial`'s bracket."""
    from optuna.pruners import _filter_study

    return _filter_study(study, trial)


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was queued with; its drawn ones if it was not queued."""
    return dict(trial.system_attrs.get(_FIXED_PARAMS_ATTR, trial.params))


def retried_trial_number(trial: FrozenTrial) -> int | None:
    """The number of the first trial of the retry chain that `trial` belongs to, if it is a
    retry (Optuna's retry callbacks record it)."""
    with _stable_since_2_8():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the trials that `trial` retries, oldest first."""
    with _stable_since_2_8():
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


@contextmanager
def _stable_since_2_8() -> Iterator[None]:
    # Marked experimental since Optuna 2.8 and unchanged since; the contract test watches them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def stale_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """RUNNING trials whose heartbeat is older than the storage's grace period, by the database
    server's clock (Optuna's own check; needs a storage opened with a heartbeat interval)."""
    return list(storage._get_stale_trial_ids(study_id))


def artifact_attr(meta: dict[str, Any]) -> dict[str, str]:
    """The system attribute that lists an artifact among a trial's artifacts, as
    `optuna.artifacts.upload_artifact` writes it (optuna-dashboard shows it), for a file that is
    not uploaded: written with `set_trial_attrs`."""
    return {_ARTIFACTS_ATTR_PREFIX + meta["artifact_id"]: json.dumps(meta)}


# Optuna's tables: a RUNNING trial with no row in trial_heartbeats never sent a heartbeat.
_ORPHANS = sqlalchemy.text(
    "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
    "WHERE t.study_id = :study_id AND t.state = 'RUNNING' AND h.trial_id IS NULL "
    "AND t.datetime_start < :cutoff"
)


def orphaned_trial_ids(storage: RDBStorage, study_id: int, grace_s: float) -> list[int]:
    """RUNNING trials that never sent a heartbeat and started over `grace_s` seconds ago.

    Optuna's stale check only sees trials with a heartbeat row; a worker killed between taking a
    trial and its first heartbeat leaves a RUNNING trial that no check would ever retry.
    """

    def query() -> list[int]:
        # Optuna stores datetime_start as the worker's naive local time.
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace_s)
        with storage.engine.connect() as connection:
            rows = connection.execute(_ORPHANS, {"study_id": study_id, "cutoff": cutoff})
            return [int(row[0]) for row in rows]

    return _retried(storage, query, "look for trials that never sent a heartbeat")


def _database(storage: BaseStorage) -> RDBStorage | None:
    """The database storage under Optuna's trial cache (`_CachedStorage`), which a `Study`
    wraps an RDB storage in; None for a storage that is not a database."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def _retried(storage: RDBStorage, call: Callable[[], T], name: str) -> T:
    # Our own queries wait out an outage as long as Optuna's calls do (storage.resilient); once
    # on a storage that does not wait.
    return storage.retried(call, name) if isinstance(storage, WaitsOutOutages) else call()
