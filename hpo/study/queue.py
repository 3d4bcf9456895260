"""Creating a study once, and opening it in a worker with the sampler and pruner it was made for.

Every study is a work queue of WAITING trials, made at creation, and a worker only ever takes a
queued trial (`WorkQueueStudy.ask`); it never creates one. The storage hands each queued trial to
exactly one worker (an atomic WAITING → RUNNING update under a row lock on PostgreSQL and MySQL),
so however many workers share the study:
- a grid study queues each grid point once: no point runs twice, as it would with Optuna's
  `GridSampler` in several workers;
- a TPE (or other sampler's) study queues `n_trials` empty trials: the budget can never be
  overrun, and the sampler samples each trial's parameters when a worker takes it, seeing every
  trial finished or running by then.
A failed or interrupted trial is queued again with the same parameters (Optuna's retry callback),
so nothing is lost and nothing counts twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UsageError
from hpo.record.config import CONFIG_ATTR, StudyConfig
from hpo.record.ranking import best_of
from hpo.study.samplers import build_sampler
from hpo.trial.epoch_book import build_pruner
from hpo.workqueue.cache import use_queue_cache
from hpo.workqueue.optuna_private import study_id, suggest_fixed
from hpo.workqueue.pop import enqueue_many, ensure_queue_index, pop_waiting_trial_id
from hpo.workqueue.queries import queued_params
from model.hyperparams import Hyperparams
from storage import StorageURL, open_storage
from storage.creation_lock import creation_lock


class NoWorkLeft(Exception):
    """The study has nothing left to run: the grid is done or the sampler's budget is spent."""


class WorkQueueStudy(optuna.Study):
    """A study whose `ask` never creates a trial the grid or the budget does not allow."""

    def __init__(
        self, study_name: str, storage: RDBStorage, config: StudyConfig, sampler: BaseSampler
    ) -> None:
        super().__init__(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=build_pruner(config.pruner, config.patience, config.epochs),
        )
        self.config = config
        self.rdb = storage  # Optuna wraps it in a cache; heartbeat queries need the database
        # A cache that reads past the queue: a trial's reads do not grow with the trials queued.
        use_queue_cache(self)

    def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
        trial_id = pop_waiting_trial_id(self)
        if trial_id is None:
            raise NoWorkLeft()
        if self.rdb.get_heartbeat_interval() is not None:
            # At once rather than when Optuna's heartbeat thread starts: a trial with no
            # heartbeat at all is invisible to Optuna's stale-trial check.
            self.rdb.record_heartbeat(trial_id)
        trial = optuna.Trial(self, trial_id)
        for name, distribution in (fixed_distributions or {}).items():
            suggest_fixed(trial, name, distribution)
        return trial


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial of lowest test loss (hpo.record.ranking)."""
    return best_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def create_study(
    storage: RDBStorage,
    name: str,
    config: StudyConfig,
    queuing: Callable[[int], None] | None = None,
) -> bool:
    """Create the study and its queue; True if created, False if it was there with this config.
    `queuing` is told how many trials are about to be queued (a long queue takes seconds).

    The config is stored last, once the queue is complete, so an interrupted creation is finished
    by running the same command again.
    """
    existing = stored_config(storage, name, missing_ok=True)
    if existing is not None:
        if existing != config:
            changed = ", ".join(
                f"{key}: {value!r} (stored {existing.to_dict()[key]!r})"
                for key, value in config.to_dict().items()
                if existing.to_dict()[key] != value
            )
            raise UsageError(f"study {name!r} already exists with other settings: {changed}")
        return False
    study = optuna.create_study(
        storage=storage, study_name=name, direction="minimize", load_if_exists=True
    )
    queued = study.get_trials(deepcopy=False)  # an interrupted creation's, if any
    if config.sampler == "grid":
        present = {Hyperparams.from_params(queued_params(t)) for t in queued}
        slots = [point.as_params() for point in config.grid if point not in present]
    else:
        slots = [{} for _ in range(len(queued), config.n_trials or 0)]
    if queuing is not None:
        queuing(len(slots))
    # One bulk insert: what `enqueue_trial` writes per trial, without its round trips.
    enqueue_many(storage, study_id(study), slots)
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    return True


def create_study_at(
    storage_url: StorageURL,
    name: str,
    config: StudyConfig,
    queuing: Callable[[int], None] | None = None,
) -> tuple[RDBStorage, bool]:
    """`create_study` on the storage at `storage_url`, under the database's creation lock: every
    node of a cluster job may run the same creation at the same moment, and one queue results.
    Returns the storage and whether the study was created."""
    with creation_lock(storage_url):
        storage = open_storage(storage_url, create=True)
        ensure_queue_index(storage)  # also for a database made before it
        return storage, create_study(storage, name, config, queuing)


def open_study(storage: RDBStorage, name: str, sampler_seed: int | None = None) -> WorkQueueStudy:
    config = stored_config(storage, name)
    if config is None:
        raise UsageError(f"no study named {name!r} in this storage{_known_names(storage)}")
    return WorkQueueStudy(name, storage, config, build_sampler(config, sampler_seed))


def load_config(storage: BaseStorage, name: str) -> StudyConfig:
    config = stored_config(storage, name)
    if config is None:
        raise UsageError(f"no study named {name!r} in this storage{_known_names(storage)}")
    return config


def stored_config(storage: BaseStorage, name: str, missing_ok: bool = False) -> StudyConfig | None:
    """The study's config; None if there is no such study (or, with `missing_ok`, no config yet:
    a creation that did not finish)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)
    if stored is None:
        if missing_ok:
            return None
        raise UsageError(
            f"study {name!r} has no hpo settings: it was not made by hpo, or its creation was "
            "interrupted (run the same hpo create again)"
        )
    return StudyConfig.from_dict(stored)


def only_study_name(storage: BaseStorage) -> str:
    """The database's one study, for a command given no --study; a UsageError naming them when
    it holds none or several."""
    names = _study_names(storage)
    if len(names) != 1:
        raise UsageError(f"give --study: the database holds {len(names)}{_listed(names)}")
    return names[0]


def _known_names(storage: BaseStorage) -> str:
    return _listed(_study_names(storage))


def _study_names(storage: BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def _listed(names: list[str]) -> str:
    return f" (studies: {', '.join(names)})" if names else " (it holds no studies)"
