"""`hpo confirm`: retrain a study's top configurations with new seeds, in a companion study.

A search picks its winner from one run per configuration, and on CIFAR-10 the spread between
seeds of one configuration is of the order of the gap between the top configurations. The
companion study `<study>-confirm` queues K×N trials: the study's K best configurations, each
with N new training seeds (the study's seed + 1 … + N; the original run is left out, since it
was selected for being low). They are ordinary queued trials, so the same `hpo worker` and
`hpo launch` run them in parallel, with the same exactly-once queue and recovery. Each trial
carries its seed and the number of the trial it confirms in its record
(`TrialRecord.seed`, `TrialRecord.confirms_trial`).

The companion's settings are the study's, with no pruner (a pruned seed would bias the mean)
and no kept models. Creation follows `hpo create`: the plan is stored last, so running the same
command again finishes an interrupted creation, and a different plan is refused.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UsageError
from hpo.record.config import CONFIG_ATTR, StudyConfig
from hpo.record.ranking import ranked
from hpo.record.space_file import listed_as_choices
from hpo.record.trial_record import TrialRecord
from hpo.study.queue import load_config, stored_config
from storage import StorageURL, open_storage
from storage.creation_lock import creation_lock

CONFIRMATION_ATTR = "hpo_confirmation"  # study user attr: the name of its confirmation study
PLAN_ATTR = "hpo_confirm_plan"  # confirmation study user attr: {top, seeds, trials}
DEFAULT_TOP = 3
DEFAULT_SEEDS = 5


def confirmation_name(study_name: str) -> str:
    return f"{study_name}-confirm"


def confirmation_of(storage: optuna.storages.BaseStorage, study_name: str) -> str | None:
    """The name of the study's confirmation study, if `hpo confirm` made one."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_study_user_attrs(study_id).get(CONFIRMATION_ATTR)


def create_confirmation(storage_url: StorageURL, study_name: str, top: int, seeds: int) -> bool:
    """Queue the top `top` complete trials of the study with `seeds` new seeds each; True if
    created, False if the same plan was there already."""
    with creation_lock(storage_url):
        storage = open_storage(storage_url, create=True)
        config = load_config(storage, study_name)
        if config.confirms is not None:
            raise UsageError(
                f"study {study_name!r} is itself the confirmation of {config.confirms!r}"
            )
        study = optuna.load_study(study_name=study_name, storage=storage)
        leaders = _top_trials(study, top)
        plan = {
            "top": top,
            "seeds": [config.seed + offset for offset in range(1, seeds + 1)],
            "trials": [trial.number for trial in leaders],
        }
        name = confirmation_name(study_name)
        companion = replace(
            config,
            sampler="tpe",  # its trials come queued with every parameter: nothing is sampled
            n_trials=top * seeds,
            space=None if config.space is None else listed_as_choices(config.space),
            pruner="none",
            keep_models=0,
            confirms=study_name,
        )
        created = _create(storage, name, companion, plan, leaders)
        study.set_user_attr(CONFIRMATION_ATTR, name)
        return created


def _top_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    complete = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if len(complete) < top:
        raise UsageError(
            f"study {study.study_name!r} has {len(complete)} complete trials; --top {top} needs "
            f"as many (run more trials, or pass --top {len(complete)})"
            if complete
            else f"study {study.study_name!r} has no complete trial to confirm yet"
        )
    return complete[:top]


def _create(
    storage: optuna.storages.BaseStorage,
    name: str,
    config: StudyConfig,
    plan: dict[str, Any],
    leaders: list[FrozenTrial],
) -> bool:
    existing = stored_config(storage, name, missing_ok=True)
    if existing is not None:
        stored_plan = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get(
            PLAN_ATTR
        )
        if stored_plan is None or existing.confirms != config.confirms:
            raise UsageError(
                f"a study named {name!r} exists and is not the confirmation of "
                f"{config.confirms!r}; rename or delete it first"
            )
        if stored_plan != plan or existing != config:
            raise UsageError(
                f"study {config.confirms!r} was confirmed already with --top "
                f"{stored_plan['top']} --seeds {len(stored_plan['seeds'])} (trials "
                f"{', '.join(map(str, stored_plan['trials']))}) in {name!r}; see it with hpo "
                f"confirm --study {config.confirms}, or delete that study to redo it"
            )
        return False
    study = optuna.create_study(
        storage=storage, study_name=name, direction="minimize", load_if_exists=True
    )
    queued = {
        (record.confirms_trial, record.seed)
        for record in map(TrialRecord.from_trial, study.get_trials(deepcopy=False))
    }
    for trial in leaders:
        for seed in plan["seeds"]:
            if (trial.number, seed) not in queued:
                study.enqueue_trial(
                    trial.params,
                    user_attrs=TrialRecord(confirms_trial=trial.number, seed=seed).to_attrs(),
                    skip_if_exists=False,
                )
    study.set_user_attr(PLAN_ATTR, plan)
    study.set_user_attr(CONFIG_ATTR, config.to_dict())  # last: the creation is complete
    return True
