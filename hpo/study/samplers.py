"""Optuna's samplers, one per worker: which sampler a study runs, seeded per worker, and the QMC
sampler whose trial number k takes the sequence's point k."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, CmaEsSampler, GPSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial

from hpo.record.config import StudyConfig
from hpo.workqueue.optuna_private import QMCSamplerBySampleId


class SlotQMCSampler(QMCSamplerBySampleId):
    """Optuna's QMC sampler, whose point number k goes to trial number k.

    Optuna's QMCSampler numbers its points by a counter in the study's attributes that it reads
    and then writes, not atomically (its own comment says so): two workers sampling at the same
    moment can take the same point. Here a point's index is its trial's number, which the storage
    gives to one trial only: no two trials get the same point, whatever the workers' timing, and
    a queue of budget slots made together takes the sequence's points in order. Nothing is written
    per trial either. The trials that sample nothing (the first, sampled independently as
    Optuna's does; a retry, which repeats its failed trial's point) leave their point unused.
    """

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self.sampling.number = trial.number  # per thread: the trial being sampled
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            del self.sampling.number

    def sample_id(self) -> int:
        return int(self.sampling.number)


def build_sampler(config: StudyConfig, sampler_seed: int | None) -> BaseSampler:
    """Optuna's sampler of the study, for one worker.

    Each worker gets its own seed (None: fresh entropy), or workers sharing a seed would propose
    the same points. What each does with the trials other workers are running (README, Samplers):
    TPE gives them a pessimistic value (its constant liar), GP takes their points into its
    acquisition as pending, CMA-ES and random search draw afresh from their distribution. QMC's
    sequence is the study's (scrambled with the study's seed, every worker the same), and trial
    number k takes its point k (SlotQMCSampler), so no two trials share a point.
    """
    if config.sampler == "tpe":
        return TPESampler(seed=sampler_seed)
    if config.sampler == "gp":
        return GPSampler(seed=sampler_seed)
    if config.sampler == "cmaes":
        # Categorical parameters go to its independent sampler (sampled_independently); the
        # worker says so once, since the command line silences Optuna's own warning.
        return CmaEsSampler(seed=sampler_seed)
    if config.sampler == "qmc":
        # Until a trial has suggested, the sampler knows no space and samples independently:
        # on the worker's seed, or workers starting together would all draw the same point.
        return SlotQMCSampler(
            seed=config.seed, scramble=True, independent_sampler=RandomSampler(seed=sampler_seed)
        )
    # random, and grid (never consulted: grid trials come queued with every parameter)
    return RandomSampler(seed=sampler_seed)


def sampled_independently(config: StudyConfig) -> list[str]:
    """The parameters that the study's sampler leaves to Optuna's independent (random) sampler:
    CMA-ES's categorical ones (a list of choices or grid values; the seed's batch sizes)."""
    if config.sampler != "cmaes":
        return []
    space = config.search_space
    if space is None:
        return ["batch_size"]
    return [param.name for param in space.params if param.values is not None]
