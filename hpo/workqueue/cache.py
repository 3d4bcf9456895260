"""A worker's trial cache: Optuna's, reading past the queue, and keeping the study's ranking.

A worker's reads of its study (the pop, TPE's sampling, its own end-of-trial reads) never read a
WAITING trial (hpo.workqueue.optuna_private.CacheReadingPastQueue), so a trial's reads do not
grow with the trials queued. `get_all_trials` and `get_trials` of a study on this cache therefore
list no WAITING trial (but the retries that this process queued itself, which Optuna's
`create_new_trial` puts in the cache); `hpo.workqueue.queries.count_trials` counts them. Reads
stay this small while trials are taken oldest first, as the pop takes them; a WAITING trial
older than finished ones (trials added to a study by hand after its queue) makes each read take
in the finished trials above it: correct, and slower.
"""

from __future__ import annotations

import bisect

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.record.ranking import rank_key, ranked
from hpo.workqueue.optuna_private import (
    CacheReadingPastQueue,
    TrialModel,
    database,
    replace_cache,
    retried,
    session,
    study_id,
    study_storage,
    trial_id,
)


class QueueTrialCache(CacheReadingPastQueue):
    """The trial cache that reads past the queue, with each study's COMPLETE trials kept in
    hpo.record.ranking's order as the cache reads them finishing: the top K is a slice."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._ranking: dict[int, list[tuple[float, int]]] = {}
        self._ranked: dict[int, set[int]] = {}  # the trial ids in each ranking

    def top(self, study: int, count: int) -> list[FrozenTrial]:
        """The study's `count` COMPLETE trials of lowest value, lowest first, ties to the
        earliest, as of a read of what changed since the last one."""
        self.read_changes(study)
        return [
            self.cached_trial(study, number) for _, number in self._ranking.get(study, [])[:count]
        ]

    def oldest_waiting_id(self, study: int) -> int | None:
        def query() -> int | None:
            with session(self.database) as opened:
                oldest = (
                    opened.query(sqlalchemy.func.min(TrialModel.trial_id))
                    .filter(TrialModel.study_id == study, TrialModel.state == TrialState.WAITING)
                    .scalar()
                )
                return None if oldest is None else int(oldest)

        return retried(self.database, query, "find the oldest queued trial")

    def on_read(self, study: int, trials: list[FrozenTrial]) -> None:
        ranking = self._ranking.setdefault(study, [])
        ranked_ids = self._ranked.setdefault(study, set())
        # A finished trial can be read again (ids above the capped watermark): ranked once.
        newly_complete = [
            rank_key(trial)
            for trial in trials
            if trial.state == TrialState.COMPLETE
            and trial.value is not None
            and trial_id(trial) not in ranked_ids
        ]
        ranked_ids.update(
            trial_id(t) for t in trials if t.state == TrialState.COMPLETE and t.value is not None
        )
        if len(newly_complete) > 16:
            ranking.extend(newly_complete)
            ranking.sort()
        else:
            for entry in newly_complete:
                bisect.insort(ranking, entry)


def use_queue_cache(study: optuna.Study) -> None:
    """Give `study` the trial cache that reads past its queue (QueueTrialCache)."""
    storage = database(study_storage(study))
    if storage is not None:
        replace_cache(study, QueueTrialCache(storage))


def top_trials(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The study's `count` COMPLETE trials in hpo.record.ranking's order: a slice of the ranking
    that a worker's trial cache keeps, else of the study's COMPLETE trials ranked."""
    cache = study_storage(study)
    if isinstance(cache, QueueTrialCache):
        return cache.top(study_id(study), count)
    return ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))[:count]
