"""Every use of Optuna's private internals, in one place.

The exactly-once queue, the retry lineage and the stale-trial checks need a few things that
Optuna (5.x) does not make public: popping one queued trial, the ids that its storage keys rows
by, the heartbeat check, the names of the attributes its retry callbacks and artifacts write, its
table layout (for trials that never sent a heartbeat), and the QMC sampler's point counter
(SlotQMCSampler numbers the points by trial instead). Nothing else in the project touches a
private Optuna name: when an Optuna release changes one of these, this module and its contract
test (tests/storage/test_optuna_internals.py, run on SQLite, PostgreSQL and MariaDB) are where it
shows, before a queue silently runs a grid point twice.

Public APIs are used wherever they exist: `RetryHeartbeatStaleTrialCallback.retried_trial_number`
and `retry_history` for the retry lineage (the callback that `hpo.study.recovery` queues retries
with; `RetryFailedTrialCallback`, deprecated since Optuna 4.9, is its subclass),
`Study.enqueue_trial` for queueing.
"""

from __future__ import annotations

import bisect
import copy
import datetime
import json
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.samplers import QMCSampler
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
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
    "QueueTrialCache",
    "SlotQMCSampler",
    "artifact_attr",
    "check_still_running",
    "count_trials",
    "enqueue_many",
    "ensure_queue_index",
    "frozen_when_asked",
    "orphaned_trial_ids",
    "pop_waiting_trial_id",
    "queued_params",
    "retried_trial_number",
    "retry_histories",
    "retry_history",
    "run_one_trial",
    "sampler_view",
    "set_trial_attrs",
    "stale_trial_ids",
    "study_id",
    "suggest_fixed",
    "take_waiting_trial",
    "taken_over_if_finished",
    "top_trials",
    "trial_by_number",
    "trial_id",
    "use_queue_cache",
    "with_intermediate_values",
]

# RDBStorage's private read methods that a worker reaches through Optuna's own code (its trial
# cache, `best_trial`, the heartbeat check): storage.resilient retries them through outages.
PRIVATE_STORAGE_READS = ("_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")

T = TypeVar("T")
_FIXED_PARAMS_ATTR = "fixed_params"  # what `enqueue_trial` stores in a queued trial
_RETRY_HISTORY_ATTR = "retry_history"  # what Optuna's retry callbacks store in a retry
_ARTIFACTS_ATTR_PREFIX = "artifacts:"  # where `optuna.artifacts.upload_artifact` lists a file
TAKEN_BY_ATTR = "hpo:taken_by"  # which worker took a queued trial (system attribute)
_POP_ATTEMPTS = 100  # rows a pop tries before it gives up (each one taken by another meanwhile)


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


def pop_waiting_trial_id(study: optuna.Study, taker: str | None = None) -> int | None:
    """Take the oldest WAITING trial and make it RUNNING, or None when none is queued.

    One indexed query takes it: on PostgreSQL `SELECT … WHERE study_id = ? AND state =
    'WAITING' ORDER BY trial_id LIMIT 1 FOR UPDATE SKIP LOCKED`, so that concurrent pops pass
    each other's locked row; on MySQL and MariaDB the 16 oldest WAITING ids, each then taken
    under its row's lock as Optuna takes one (`_take_one_by_one`). However many trials are
    queued, a pop reads a few rows. In the same transaction the trial is marked with `taker`
    and this pop's own random suffix (TAKEN_BY_ATTR): a pop retried after its COMMIT's reply was
    lost finds its own trial instead of taking a second one. (Optuna's own pop reads every
    queued trial whole: 3.7 s per trial with 8,000 queued.)

    The taken trial is then put in Optuna's trial cache, as `create_new_trial` puts a trial it
    creates: the cache must hold a trial before a parameter can be suggested in it (a pop by id
    without this raises KeyError in `set_trial_param`). As in `Study.ask`, the list of trials
    that samplers read during a trial is dropped first.
    """
    study._thread_local.cached_all_trials = None
    storage = _database(study._storage)
    if storage is None:  # not a database: Optuna's own pop
        return study._pop_waiting_trial_id()
    taker = taker or getattr(storage, "taker", None) or f"pid {os.getpid()}"
    # This pop's own mark: a retry must find the trial this pop took, not an earlier pop's that
    # is still RUNNING under the same taker (8 threads of one taker each, 25 pops apiece, got 24
    # trials twice on MariaDB when a retried pop matched the taker alone).
    mark = f"{taker}/{uuid.uuid4().hex[:8]}"
    key_of_study = study._study_id
    attempts = 0

    def attempt() -> int | None:
        nonlocal attempts
        attempts += 1
        return _take_oldest_waiting(storage, key_of_study, mark, look_for_own=attempts > 1)

    if storage.engine.dialect.name == "mysql":
        taken = _take_one_by_one(storage, key_of_study, mark)
    else:
        taken = _retried(storage, attempt, "take a queued trial")
    if taken is None:
        return None
    trial_id, number = taken
    _cache_running_trial(study._storage, key_of_study, trial_id, number)
    return trial_id


def _take_oldest_waiting(
    storage: RDBStorage, study_id: int, mark: str, look_for_own: bool
) -> tuple[int, int] | None:
    """The trial taken: its id and number."""
    with _create_scoped_session(storage.scoped_session, True) as session:
        if look_for_own:  # an earlier attempt may have committed: its trial is ours
            own = (
                session.query(models.TrialModel.trial_id, models.TrialModel.number)
                .join(models.TrialSystemAttributeModel)
                .filter(
                    models.TrialModel.study_id == study_id,
                    models.TrialModel.state == TrialState.RUNNING,
                    models.TrialSystemAttributeModel.key == TAKEN_BY_ATTR,
                    models.TrialSystemAttributeModel.value_json == json.dumps(mark),
                )
                .first()
            )
            if own is not None:
                return int(own[0]), int(own[1])
        for _ in range(_POP_ATTEMPTS):
            query = _oldest_waiting(session, study_id).limit(1)
            # PostgreSQL: concurrent pops pass each other's locked row. SQLite has no row locks
            # (one writer at a time, and one worker per file: storage.sqlite_lock).
            if storage.engine.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            row = query.first()
            if row is None:
                return None
            key, number = int(row[0]), int(row[1])
            # Taken only if still WAITING, judged by the UPDATE's own read of the latest row
            # (MariaDB's SKIP LOCKED select handed out rows other pops had taken: hence
            # `_take_one_by_one` there).
            taken = session.execute(
                sqlalchemy.update(models.TrialModel)
                .where(
                    models.TrialModel.trial_id == key,
                    models.TrialModel.state == TrialState.WAITING,
                )
                .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now())
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken == 1:
                storage._set_trial_attr_without_commit(
                    session, models.TrialSystemAttributeModel, key, TAKEN_BY_ATTR, mark
                )
                return key, number
        raise optuna.exceptions.StorageInternalError(
            f"no queued trial could be taken in {_POP_ATTEMPTS} tries: every one was taken first"
        )


def _take_one_by_one(storage: RDBStorage, study_id: int, mark: str) -> tuple[int, int] | None:
    """MySQL and MariaDB: the oldest WAITING trials by an indexed query without a lock, then each
    taken, or found taken, in a transaction of its own under its row's lock by primary key
    (`take_waiting_trial`, Optuna's own way of taking a queued trial, with this pop's mark).
    Under load, MariaDB 10.11 handed one row to several pops that selected it FOR UPDATE (SKIP
    LOCKED or not) and changed it with an UPDATE that checked its state: 26 to 50 distinct trials
    for 200 pops by 8 threads beside the other tests."""

    def candidates() -> list[tuple[int, int]]:
        with _create_scoped_session(storage.scoped_session) as session:
            rows = _oldest_waiting(session, study_id).limit(_CANDIDATES).all()
            return [(int(row[0]), int(row[1])) for row in rows]

    for _ in range(_POP_ATTEMPTS):
        found = _retried(storage, candidates, "find queued trials")
        if not found:
            return None
        for key, number in found:
            if _retried(
                storage, lambda key=key: take_waiting_trial(storage, key, mark), "take a trial"
            ):
                return key, number
    raise optuna.exceptions.StorageInternalError(
        f"no queued trial could be taken in {_POP_ATTEMPTS} rounds: every one was taken first"
    )


_CANDIDATES = 16  # the oldest WAITING trials a MySQL pop tries, per round


def _oldest_waiting(session: Any, study_id: int) -> Any:
    """The study's WAITING trials, (id, number), oldest first: the queue index's query."""
    return (
        session.query(models.TrialModel.trial_id, models.TrialModel.number)
        .filter(
            models.TrialModel.study_id == study_id,
            models.TrialModel.state == TrialState.WAITING,
        )
        .order_by(models.TrialModel.trial_id)
    )


def _cache_running_trial(cache: BaseStorage, study_id: int, trial_id: int, number: int) -> None:
    """Put a trial this process just took in Optuna's trial cache, as `create_new_trial` does,
    and among the unfinished trials that the cache reads again at every listing. What the cache
    holds of an unfinished trial is only ever read after such a reading (`get_trial` goes to the
    database for it), so an empty RUNNING trial stands in: no read of the trial here."""
    if not isinstance(cache, _CachedStorage):
        return
    trial = FrozenTrial(
        number=number,
        state=TrialState.RUNNING,
        value=None,
        values=None,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )
    with cache._lock:
        if study_id not in cache._studies:
            cache._studies[study_id] = _StudyInfo()
        cache._add_trials_to_cache(study_id, [trial])
        cache._studies[study_id].unfinished_trial_ids.add(trial._trial_id)


class QueueTrialCache(_CachedStorage):
    """Optuna's trial cache, reading past the queue: it never reads a WAITING trial.

    Optuna's cache reads, at every `get_all_trials`, each trial it has not seen finished: with a
    queue of 10,000 WAITING trials, all 10,000 with their attributes, several times per trial
    (the pop, TPE's sampling, the worker's own reads). This one leaves WAITING trials in the
    database (a worker takes them with `pop_waiting_trial_id`, which caches the trial it takes)
    and reads the others as Optuna does: the unfinished ones again, and those past the last
    finished trial id. That id is kept below the oldest WAITING trial, read first by an indexed
    query, so that a trial still WAITING now is read once it is taken, whoever takes it.
    `get_all_trials` and `get_trials` of a study on this cache therefore list no WAITING trial
    (but the retries that this process queued itself, which Optuna's `create_new_trial` puts in
    the cache); `count_trials` counts them. Reads stay this small while trials are taken oldest
    first, as the pop takes them; a WAITING trial older than finished ones (trials added to a
    study by hand after its queue) makes each read take in the finished trials above it:
    correct, and slower.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        # Per study, its COMPLETE trials as (value, number), lowest first (hpo.record.ranking's
        # order), kept up to date as the cache reads trials finishing: the top K is a slice.
        self._ranking: dict[int, list[tuple[float, int]]] = {}
        self._ranked: dict[int, set[int]] = {}  # the trial ids in each ranking

    def top(self, study_id: int, count: int) -> list[FrozenTrial]:
        """The study's `count` COMPLETE trials of lowest value, lowest first, ties to the
        earliest, as of a read of what changed since the last one."""
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            trials = self._studies[study_id].trials
            return [trials[number] for _, number in self._ranking.get(study_id, [])[:count]]

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            # First the oldest WAITING trial, then the trials: one taken in between is read.
            oldest_waiting = _oldest_waiting_id(self._backend, study_id)
            trials = self._backend._get_trials(
                study_id,
                states=_TAKEN_STATES,
                included_trial_ids=study.unfinished_trial_ids,
                trial_id_greater_than=study.last_finished_trial_id,
            )
            self._add_trials_to_cache(study_id, trials)
            ranking = self._ranking.setdefault(study_id, [])
            ranked = self._ranked.setdefault(study_id, set())
            newly_complete = []
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)
                # A finished trial can be read again (ids above the capped watermark): once.
                if (
                    trial.state == TrialState.COMPLETE
                    and trial.value is not None
                    and trial._trial_id not in ranked
                ):
                    ranked.add(trial._trial_id)
                    newly_complete.append((trial.value, trial.number))
            if len(newly_complete) > 16:
                ranking.extend(newly_complete)
                ranking.sort()
            else:
                for entry in newly_complete:
                    bisect.insort(ranking, entry)
            if oldest_waiting is not None:
                study.last_finished_trial_id = min(study.last_finished_trial_id, oldest_waiting - 1)


_TAKEN_STATES = tuple(state for state in TrialState if state != TrialState.WAITING)


def use_queue_cache(study: optuna.Study) -> None:
    """Give `study` the trial cache that reads past its queue (QueueTrialCache)."""
    storage = _database(study._storage)
    if storage is not None:
        study._storage = QueueTrialCache(storage)


class SlotQMCSampler(QMCSampler):
    """Optuna's QMC sampler, whose point number k goes to trial number k.

    Optuna's QMCSampler numbers its points by a counter in the study's attributes that it reads
    and then writes, not atomically (its own comment says so): two workers sampling at the same
    moment can take the same point. Here a point's index is its trial's number, which the storage
    gives to one trial only: no two trials get the same point, whatever the workers' timing, and
    a queue of budget slots made together takes the sequence's points in order. Nothing is written
    per trial either. The trials that sample nothing (the first, sampled independently as
    Optuna's does; a retry, which repeats its failed trial's point) leave their point unused.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sampling = threading.local()  # the number of the trial being sampled, per thread

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._sampling.number = trial.number
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            del self._sampling.number

    def _find_sample_id(
        self, study: optuna.Study, search_space: dict[str, BaseDistribution]
    ) -> int:
        return self._sampling.number


def _oldest_waiting_id(storage: RDBStorage, study_id: int) -> int | None:
    def query() -> int | None:
        with _create_scoped_session(storage.scoped_session) as session:
            oldest = (
                session.query(sqlalchemy.func.min(models.TrialModel.trial_id))
                .filter(
                    models.TrialModel.study_id == study_id,
                    models.TrialModel.state == TrialState.WAITING,
                )
                .scalar()
            )
            return None if oldest is None else int(oldest)

    return _retried(storage, query, "find the oldest queued trial")


def count_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    """How many of the study's trials are in `states`: one indexed count, where the trial cache
    would read them all (and QueueTrialCache does not list WAITING ones)."""
    storage = _database(study._storage)
    if storage is None:
        return len(study.get_trials(deepcopy=False, states=states))
    key_of_study = study._study_id

    def query() -> int:
        with _create_scoped_session(storage.scoped_session) as session:
            return int(
                session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
                .filter(
                    models.TrialModel.study_id == key_of_study,
                    models.TrialModel.state.in_(states),
                )
                .scalar()
            )

    return _retried(storage, query, "count trials")


def retry_histories(study: optuna.Study) -> list[list[int]]:
    """The retry history (`retry_history`) of every trial of the study that is a retry, WAITING
    ones included: one query of the retries' attribute rows, not of every trial."""
    storage = _database(study._storage)
    if storage is None:
        return [retry_history(t) for t in study.get_trials(deepcopy=False)]
    key_of_study = study._study_id

    def query() -> list[list[int]]:
        with _create_scoped_session(storage.scoped_session) as session:
            rows = (
                session.query(models.TrialSystemAttributeModel.value_json)
                .join(models.TrialModel)
                .filter(
                    models.TrialModel.study_id == key_of_study,
                    models.TrialSystemAttributeModel.key == _RETRY_HISTORY_ATTR,
                )
                .all()
            )
            return [list(json.loads(row[0])) for row in rows]

    return _retried(storage, query, "read the retries")


def top_trials(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The study's `count` COMPLETE trials of lowest value, lowest first, ties to the earliest
    (hpo.record.ranking's order): a slice of the ranking that a worker's trial cache keeps as it
    reads trials finishing (QueueTrialCache), else of the cached trials sorted."""
    if isinstance(study._storage, QueueTrialCache):
        return study._storage.top(study._study_id, count)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (t.value, t.number))[:count]


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """The study's trial `number` as the database holds it now."""
    storage = study._storage
    return storage.get_trial(
        storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    )


def enqueue_many(storage: RDBStorage, study_id: int, fixed_params: list[dict[str, Any]]) -> None:
    """Queue one WAITING trial per entry of `fixed_params`, as `Study.enqueue_trial(params)`
    queues one (a trial with the system attribute `fixed_params`), in one transaction of a few
    bulk statements instead of several round trips per trial: 10,000 trials in seconds rather
    than minutes. The study's row is locked meanwhile, as Optuna's own trial creation locks
    it, so that trial numbers stay unique and consecutive."""
    if not fixed_params:
        return
    with _create_scoped_session(storage.scoped_session, True) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        first = (
            session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
        )
        session.execute(
            sqlalchemy.insert(models.TrialModel),
            [
                {"study_id": study_id, "number": first + k, "state": TrialState.WAITING}
                for k in range(len(fixed_params))
            ],
        )
        ids = dict(
            session.query(models.TrialModel.number, models.TrialModel.trial_id)
            .filter(
                models.TrialModel.study_id == study_id,
                models.TrialModel.number >= first,
            )
            .all()
        )
        session.execute(
            sqlalchemy.insert(models.TrialSystemAttributeModel),
            [
                {
                    "trial_id": ids[first + k],
                    "key": _FIXED_PARAMS_ATTR,
                    "value_json": json.dumps(params),
                }
                for k, params in enumerate(fixed_params)
            ],
        )


# An index for the queue's queries (the pop, the oldest WAITING trial, the counts): Optuna's
# trials table has one on study_id alone, which leaves a pop reading every trial of the study.
_QUEUE_INDEX = "ix_hpo_trials_queue"


def ensure_queue_index(storage: RDBStorage) -> bool:
    """Add the queue's index to Optuna's trials table if it is missing; True if added. Run at
    `hpo create` (under the creation lock), so a database made by an earlier version gains it."""
    engine = storage.engine
    if _QUEUE_INDEX in {
        index["name"] for index in sqlalchemy.inspect(engine).get_indexes("trials")
    }:
        return False
    table = sqlalchemy.Table(
        "trials",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("trial_id", sqlalchemy.Integer),
        sqlalchemy.Column("study_id", sqlalchemy.Integer),
        sqlalchemy.Column("state", sqlalchemy.String(8)),
    )
    sqlalchemy.Index(_QUEUE_INDEX, table.c.study_id, table.c.state, table.c.trial_id).create(engine)
    return True


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
