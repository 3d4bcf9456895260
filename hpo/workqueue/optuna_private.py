"""Every use of Optuna's private names, in one small module.

The work queue needs a few things that Optuna (5.x) does not make public. Each is wrapped here
under a name of this project's, and nothing else in the project touches a private Optuna name
(tests/hpo/workqueue/test_private_names.py searches for them). When an Optuna release changes one,
this module and its contract test (tests/hpo/workqueue/test_contract.py, on SQLite, PostgreSQL and
MariaDB) are where it shows, before a queue silently runs a grid point twice. The names:

- `optuna.storages._rdb.models` (the tables' ORM classes) and `_create_scoped_session`: the
  queue's own queries and writes in Optuna's schema; `RDBStorage._set_trial_attr_without_commit`:
  an attribute upsert inside one of those transactions;
- `Trial._trial_id`, `FrozenTrial._trial_id`, `Study._study_id`: the ids storage rows are keyed
  by; `Study._storage`: the trial cache a study reads through; `Study._thread_local`: the trial
  list that samplers read during a trial; `Study._pop_waiting_trial_id`: Optuna's own pop, on a
  storage that is not a database;
- `Trial._cached_frozen_trial`: the trial as asked; `Trial._suggest`: suggesting from a
  distribution object; `optuna.pruners._filter_study`: the study as a Hyperband bracket sees it;
- `optuna.storages._cached_storage._CachedStorage` and `_StudyInfo`, its `_lock`, `_studies`,
  `_backend`, `_add_trials_to_cache`, `_read_trials_from_remote_storage`; the backend's
  `_get_trials`, `_get_best_trial_id` (read through `get_best_trial`) and
  `_get_stale_trial_ids`: the trial cache that reads past the queue, with outage retries;
- `QMCSampler._find_sample_id`: which point of the sequence a trial takes;
- the attribute names Optuna writes: `fixed_params` (a queued trial's parameters),
  `retry_history` (a retry's lineage), `artifacts:` (an artifact's listing).

Public APIs are used wherever they exist, in the modules beside this one.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import QMCSampler
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from storage.resilient import ResilientRDBStorage

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore as ArtifactStore

T = TypeVar("T")

# Optuna's tables, as its ORM declares them.
TrialModel = models.TrialModel
TrialSystemAttributeModel = models.TrialSystemAttributeModel
TrialUserAttributeModel = models.TrialUserAttributeModel
StudyModel = models.StudyModel

FIXED_PARAMS_ATTR = "fixed_params"  # what `enqueue_trial` stores in a queued trial
RETRY_HISTORY_ATTR = "retry_history"  # what Optuna's retry callbacks store in a retry
ARTIFACTS_ATTR_PREFIX = "artifacts:"  # where `optuna.artifacts.upload_artifact` lists a file


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's key of a trial (unique across studies; `trial.number` is per study)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads through (Optuna's trial cache around a database)."""
    return study._storage


def database(storage: BaseStorage) -> RDBStorage | None:
    """The database under Optuna's trial cache, or the storage itself if it is a database; None
    for a storage that is not a database."""
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    return backend if isinstance(backend, RDBStorage) else None


def retried(storage: RDBStorage, call: Callable[[], T], name: str) -> T:
    """`call()`, waiting out a database outage as long as the storage's own calls do (the
    storage holds its `outage_s`); once on a plain Optuna storage."""
    if isinstance(storage, ResilientRDBStorage):
        return storage.retried(call, name)
    return call()


@contextmanager
def session(storage: RDBStorage, commit: bool = False) -> Iterator[Any]:
    """A session of the storage's engine, as Optuna opens its own (committed at the end with
    `commit`, rolled back on an error, errors raised as `StorageInternalError`)."""
    with _create_scoped_session(storage.scoped_session, commit) as opened:
        yield opened


def set_attr_in_session(
    storage: RDBStorage, opened: Any, *, system: bool, trial: int, key: str, value: Any
) -> None:
    """Upsert a trial's user or system attribute inside an open session, as Optuna does."""
    table = TrialSystemAttributeModel if system else TrialUserAttributeModel
    storage._set_trial_attr_without_commit(opened, table, trial, key, value)


def optuna_pop(study: optuna.Study) -> int | None:
    """Optuna's own pop of a WAITING trial (for a storage that is not a database)."""
    return study._pop_waiting_trial_id()


def forget_trial_list(study: optuna.Study) -> None:
    """Drop the list of trials that samplers read during a trial, as `Study.ask` does."""
    study._thread_local.cached_all_trials = None


def frozen_when_asked(trial: optuna.Trial) -> FrozenTrial:
    """A copy of the trial as Optuna read it when the `Trial` was made, with the parameters
    suggested since: its queued parameters and retry lineage without another database read."""
    return copy.deepcopy(trial._cached_frozen_trial)


def remember_user_attrs(trial: optuna.Trial, user_attrs: dict[str, Any]) -> None:
    """What `set_user_attr` keeps in the trial as asked, for attributes written another way."""
    trial._cached_frozen_trial.user_attrs.update(user_attrs)


def suggest_fixed(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Suggest a parameter from a distribution object (what `Study.ask(fixed_distributions)`
    does)."""
    return trial._suggest(name, distribution)


def sampler_view(study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
    """The study as Optuna's samplers see it when they sample `trial`: with a `HyperbandPruner`,
    only the trials of `trial`'s bracket."""
    from optuna.pruners import _filter_study

    return _filter_study(study, trial)


def stale_trial_ids(storage: RDBStorage, study: int) -> list[int]:
    """RUNNING trials whose heartbeat is older than the storage's grace period, by the database
    server's clock (Optuna's own check; needs a storage opened with a heartbeat interval)."""
    return list(retried(storage, lambda: storage._get_stale_trial_ids(study), "stale check"))


_TAKEN_STATES = tuple(state for state in TrialState if state != TrialState.WAITING)


class CacheReadingPastQueue(_CachedStorage):
    """Optuna's trial cache, reading everything but WAITING trials, through outages.

    At every listing Optuna's cache reads each trial it has not seen finished: with a queue of
    10,000 WAITING trials, all of them. This one reads the trials that are not WAITING, as
    Optuna reads the others: the unfinished ones again, and those past the last finished trial
    id. That id is kept below `oldest_waiting_id(study)` (read first, so that a trial taken in
    between is read), so a trial still WAITING now is read once it is taken, whoever takes it.
    Each trial read is passed to `on_read` (hpo.workqueue.cache ranks them). Every read of the
    database waits out an outage as the storage's public calls do.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self.database = backend

    def oldest_waiting_id(self, study: int) -> int | None:
        raise NotImplementedError

    def on_read(self, study: int, trials: list[FrozenTrial]) -> None:
        """Told the trials of each read, once they are in the cache (under its lock)."""

    def cached_trial(self, study: int, number: int) -> FrozenTrial:
        with self._lock:
            return self._studies[study].trials[number]

    def read_changes(self, study: int) -> None:
        """Read what changed in the study since the last read (what every listing does)."""
        self._read_trials_from_remote_storage(study)

    def add_running_trial(self, study: int, trial: int, number: int) -> None:
        """Put a trial this process just took in the cache, as `create_new_trial` does, and
        among the unfinished trials that every listing reads again. What the cache holds of an
        unfinished trial is only read after such a reading (`get_trial` goes to the database
        for it), so an empty RUNNING trial stands in: no read of the trial here."""
        frozen = FrozenTrial(
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
            trial_id=trial,
        )
        with self._lock:
            if study not in self._studies:
                self._studies[study] = _StudyInfo()
            self._add_trials_to_cache(study, [frozen])
            self._studies[study].unfinished_trial_ids.add(trial)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            info = self._studies[study_id]
            oldest_waiting = self.oldest_waiting_id(study_id)
            trials = retried(
                self.database,
                lambda: self.database._get_trials(
                    study_id,
                    states=_TAKEN_STATES,
                    included_trial_ids=info.unfinished_trial_ids,
                    trial_id_greater_than=info.last_finished_trial_id,
                ),
                "read trials",
            )
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    info.unfinished_trial_ids.add(trial._trial_id)
                    continue
                info.last_finished_trial_id = max(info.last_finished_trial_id, trial._trial_id)
                info.unfinished_trial_ids.discard(trial._trial_id)
            self.on_read(study_id, trials)
            if oldest_waiting is not None:
                info.last_finished_trial_id = min(info.last_finished_trial_id, oldest_waiting - 1)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        read = super().get_best_trial  # reads the backend's `_get_best_trial_id`
        return retried(self.database, lambda: read(study_id), "read the best trial")

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return stale_trial_ids(self.database, study_id)


def replace_cache(study: optuna.Study, cache: CacheReadingPastQueue) -> None:
    """Give `study` another trial cache."""
    study._storage = cache


class QMCSamplerBySampleId(QMCSampler):
    """Optuna's QMC sampler, asking `sample_id` which point of the sequence to take (Optuna's
    reads and then writes a counter in the study's attributes)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sampling = threading.local()

    def sample_id(self) -> int:
        raise NotImplementedError

    def _find_sample_id(
        self, study: optuna.Study, search_space: dict[str, BaseDistribution]
    ) -> int:
        return self.sample_id()
