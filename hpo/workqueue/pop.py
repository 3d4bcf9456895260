"""Taking a queued trial, exactly once: the pop, its two paths (one per dialect family), the bulk
enqueue and the queue's index.

A pop takes the oldest WAITING trial and makes it RUNNING. However many trials are queued, it
reads a few rows (Optuna's own pop reads every queued trial whole: 3.7 s per trial with 8,000
queued). In the same transaction the trial is marked with the taker and this pop's own random
suffix (TAKEN_BY_ATTR): a pop retried after its COMMIT's reply was lost finds its own trial
instead of taking a second one.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import uuid
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from hpo.workqueue.optuna_private import (
    FIXED_PARAMS_ATTR,
    CacheReadingPastQueue,
    StudyModel,
    TrialModel,
    TrialSystemAttributeModel,
    database,
    forget_trial_list,
    optuna_pop,
    retried,
    session,
    set_attr_in_session,
    study_id,
    study_storage,
)
from storage.resilient import ResilientRDBStorage

TAKEN_BY_ATTR = "hpo:taken_by"  # which worker took a queued trial (system attribute)
_POP_ATTEMPTS = 100  # rows a pop tries before it gives up (each one taken by another meanwhile)
_CANDIDATES = 16  # the oldest WAITING trials a MySQL pop tries, per round


def pop_waiting_trial_id(study: optuna.Study, taker: str | None = None) -> int | None:
    """Take the oldest WAITING trial and make it RUNNING; None when none is queued.

    On PostgreSQL and SQLite one indexed query takes it (`… ORDER BY trial_id LIMIT 1 FOR
    UPDATE SKIP LOCKED` on PostgreSQL, so that concurrent pops pass each other's locked row);
    on MySQL and MariaDB the 16 oldest WAITING ids, each then taken under its row's lock
    (`_take_one_by_one`). The taken trial is put in the study's trial cache, as
    `create_new_trial` puts a trial it creates: the cache must hold a trial before a parameter
    can be suggested in it. As in `Study.ask`, the list of trials that samplers read during a
    trial is dropped first.
    """
    forget_trial_list(study)
    storage = database(study_storage(study))
    if storage is None:  # not a database: Optuna's own pop
        return optuna_pop(study)
    if taker is None:  # the storage's name for this process, else the process id
        taker = storage.taker if isinstance(storage, ResilientRDBStorage) else f"pid {os.getpid()}"
    # This pop's own mark: a retry must find the trial this pop took, not an earlier pop's that
    # is still RUNNING under the same taker (8 threads of one taker each, 25 pops apiece, got 24
    # trials twice on MariaDB when a retried pop matched the taker alone).
    mark = f"{taker}/{uuid.uuid4().hex[:8]}"
    key_of_study = study_id(study)
    if storage.engine.dialect.name == "mysql":
        taken = _take_one_by_one(storage, key_of_study, mark)
    else:
        attempts = 0

        def attempt() -> tuple[int, int] | None:
            nonlocal attempts
            attempts += 1
            return _take_oldest_waiting(storage, key_of_study, mark, look_for_own=attempts > 1)

        taken = retried(storage, attempt, "take a queued trial")
    if taken is None:
        return None
    key, number = taken
    cache = study_storage(study)
    if isinstance(cache, CacheReadingPastQueue):
        cache.add_running_trial(key_of_study, key, number)
    return key


def _take_oldest_waiting(
    storage: RDBStorage, study: int, mark: str, look_for_own: bool
) -> tuple[int, int] | None:
    """The trial taken: its id and number."""
    with session(storage, commit=True) as opened:
        if look_for_own:  # an earlier attempt may have committed: its trial is ours
            own = (
                opened.query(TrialModel.trial_id, TrialModel.number)
                .join(TrialSystemAttributeModel)
                .filter(
                    TrialModel.study_id == study,
                    TrialModel.state == TrialState.RUNNING,
                    TrialSystemAttributeModel.key == TAKEN_BY_ATTR,
                    TrialSystemAttributeModel.value_json == json.dumps(mark),
                )
                .first()
            )
            if own is not None:
                return int(own[0]), int(own[1])
        for _ in range(_POP_ATTEMPTS):
            query = oldest_waiting(opened, study).limit(1)
            # PostgreSQL: concurrent pops pass each other's locked row. SQLite has no row locks
            # (one writer at a time, and one worker per file: storage.sqlite_lock).
            if storage.engine.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            row = query.first()
            if row is None:
                return None
            key, number = int(row[0]), int(row[1])
            # Taken only if still WAITING, judged by the UPDATE's own read of the latest row.
            taken = opened.execute(
                sqlalchemy.update(TrialModel)
                .where(TrialModel.trial_id == key, TrialModel.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now())
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken == 1:
                set_attr_in_session(
                    storage, opened, system=True, trial=key, key=TAKEN_BY_ATTR, value=mark
                )
                return key, number
        raise optuna.exceptions.StorageInternalError(
            f"no queued trial could be taken in {_POP_ATTEMPTS} tries: every one was taken first"
        )


def _take_one_by_one(storage: RDBStorage, study: int, mark: str) -> tuple[int, int] | None:
    """MySQL and MariaDB: the oldest WAITING trials by an indexed query without a lock, then each
    taken, or found taken, in a transaction of its own under its row's lock by primary key
    (`take_waiting_trial`). Under load, MariaDB 10.11 handed one row to several pops that
    selected it FOR UPDATE (SKIP LOCKED or not) and changed it with an UPDATE that checked its
    state: 26 to 50 distinct trials for 200 pops by 8 threads beside the other tests."""

    def candidates() -> list[tuple[int, int]]:
        with session(storage) as opened:
            rows = oldest_waiting(opened, study).limit(_CANDIDATES).all()
            return [(int(row[0]), int(row[1])) for row in rows]

    for _ in range(_POP_ATTEMPTS):
        found = retried(storage, candidates, "find queued trials")
        if not found:
            return None
        for key, number in found:
            if retried(storage, functools.partial(take_waiting_trial, storage, key, mark), "take"):
                return key, number
    raise optuna.exceptions.StorageInternalError(
        f"no queued trial could be taken in {_POP_ATTEMPTS} rounds: every one was taken first"
    )


def take_waiting_trial(storage: RDBStorage, trial: int, taker: str) -> bool:
    """WAITING → RUNNING under the row's lock, with the start time (as Optuna takes a queued
    trial), and in the same transaction the system attribute TAKEN_BY_ATTR = `taker`. True when
    the trial is the taker's now: taken by this call, or found RUNNING under the taker's own
    mark (an earlier attempt that committed but whose reply was lost). False for a trial that
    another took or that is finished."""
    with session(storage, commit=True) as opened:
        row = TrialModel.find_or_raise_by_id(trial, opened, for_update=True)
        if row.state == TrialState.RUNNING:
            mark = (
                opened.query(TrialSystemAttributeModel.value_json)
                .filter_by(trial_id=trial, key=TAKEN_BY_ATTR)
                .scalar()
            )
            return mark is not None and json.loads(mark) == taker
        if row.state != TrialState.WAITING:
            return False
        row.state = TrialState.RUNNING
        row.datetime_start = datetime.datetime.now()  # local time, as Optuna writes it
        set_attr_in_session(
            storage, opened, system=True, trial=trial, key=TAKEN_BY_ATTR, value=taker
        )
    return True


def oldest_waiting(opened: Any, study: int) -> Any:
    """The study's WAITING trials, (id, number), oldest first: the queue index's query."""
    return (
        opened.query(TrialModel.trial_id, TrialModel.number)
        .filter(TrialModel.study_id == study, TrialModel.state == TrialState.WAITING)
        .order_by(TrialModel.trial_id)
    )


def enqueue_many(storage: RDBStorage, study: int, fixed_params: list[dict[str, Any]]) -> None:
    """Queue one WAITING trial per entry of `fixed_params`, as `Study.enqueue_trial(params)`
    queues one, in one transaction of a few bulk statements instead of several round trips per
    trial: 10,000 trials in seconds rather than minutes. The study's row is locked meanwhile, as
    Optuna's own trial creation locks it, so that trial numbers stay unique and consecutive."""
    if not fixed_params:
        return
    with session(storage, commit=True) as opened:
        StudyModel.find_or_raise_by_id(study, opened, for_update=True)
        first = (
            opened.query(sqlalchemy.func.count(TrialModel.trial_id))
            .filter(TrialModel.study_id == study)
            .scalar()
        )
        opened.execute(
            sqlalchemy.insert(TrialModel),
            [
                {"study_id": study, "number": first + k, "state": TrialState.WAITING}
                for k in range(len(fixed_params))
            ],
        )
        ids = dict(
            opened.query(TrialModel.number, TrialModel.trial_id)
            .filter(TrialModel.study_id == study, TrialModel.number >= first)
            .all()
        )
        opened.execute(
            sqlalchemy.insert(TrialSystemAttributeModel),
            [
                {
                    "trial_id": ids[first + k],
                    "key": FIXED_PARAMS_ATTR,
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
