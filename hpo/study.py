"""Creating a study once, and opening it in a worker with the sampler and pruner it was made for.

A grid study is a work queue: creation enqueues every grid point as a WAITING trial, and a worker
takes only queued trials (`WorkQueueStudy.ask`), so no grid point is sampled twice by a sampler
that cannot see the other workers. A TPE study takes queued trials (retries) first, then samples
new ones while its budget lasts.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.config import CONFIG_ATTR, StudyConfig
from hpo.errors import UsageError
from hpo.pruning import build_pruner
from hpo.search_space import grid_points


class NoWorkLeft(Exception):
    """The study has nothing left to run: the grid is done or the TPE budget is spent."""


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

    def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
        # Optuna's ask pops a WAITING trial or, failing that, creates a new one. The pop is an
        # atomic WAITING → RUNNING update in the storage, so handing out queued trials is
        # exactly-once; creating one is where duplicates and budget overruns would come from.
        self._thread_local.cached_all_trials = None
        trial_id = self._pop_waiting_trial_id()
        if trial_id is None:
            if self.config.sampler == "grid" or budget_used(self) >= (self.config.n_trials or 0):
                raise NoWorkLeft()
            trial_id = self._storage.create_new_trial(self._study_id)
        trial = optuna.Trial(self, trial_id)
        for name, distribution in (fixed_distributions or {}).items():
            trial._suggest(name, distribution)
        return trial


def budget_used(study: optuna.Study) -> int:
    """Trials that count against a TPE budget: all but queued ones and failures already retried."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(
        1
        for t in trials
        if t.state != TrialState.WAITING
        and not (t.state == TrialState.FAIL and t.number in retried)
    )


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial of lowest test loss; on ties the earliest, whatever the database order.

    PRUNED trials never count: their value is their last report, not their best.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: (t.value, t.number), default=None)


def create_study(storage: RDBStorage, name: str, config: StudyConfig) -> bool:
    """Create the study; True if created, False if it already existed with the same config."""
    existing = _stored_config(storage, name)
    if existing is not None:
        if existing != config:
            changed = ", ".join(
                f"{key}: {value!r} (stored {existing.to_dict()[key]!r})"
                for key, value in config.to_dict().items()
                if existing.to_dict()[key] != value
            )
            raise UsageError(f"study {name!r} already exists with other settings: {changed}")
        return False
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        raise UsageError(
            f"study {name!r} exists but was not made by hpo; pick another name"
        ) from None
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    if config.sampler == "grid":
        for point in grid_points(config.preset):
            study.enqueue_trial(point, skip_if_exists=False)
    return True


def open_study(storage: RDBStorage, name: str, sampler_seed: int | None = None) -> WorkQueueStudy:
    config = _stored_config(storage, name)
    if config is None:
        raise UsageError(f"no study named {name!r} in this storage{_known_names(storage)}")
    sampler: BaseSampler
    if config.sampler == "tpe":
        # Each worker gets its own seed (None: fresh entropy), or workers sharing a seed would
        # propose the same start-up points.
        sampler = TPESampler(seed=sampler_seed)
    else:
        sampler = RandomSampler(seed=sampler_seed)  # never consulted: grid trials come queued
    return WorkQueueStudy(name, storage, config, sampler)


def load_config(storage: RDBStorage, name: str) -> StudyConfig:
    config = _stored_config(storage, name)
    if config is None:
        raise UsageError(f"no study named {name!r} in this storage{_known_names(storage)}")
    return config


def _stored_config(storage: RDBStorage, name: str) -> StudyConfig | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)
    if stored is None:
        raise UsageError(f"study {name!r} was not made by hpo (no {CONFIG_ATTR} attribute)")
    return StudyConfig.from_dict(stored)


def _known_names(storage: RDBStorage) -> str:
    names = sorted(s.study_name for s in storage.get_all_studies())
    return f" (studies: {', '.join(names)})" if names else " (it holds no studies)"
