"""A worker: join a study, take trials until there are none left, print a line per trial."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpo.data import study_data, study_pipeline
from hpo.device import resolve_device
from hpo.errors import UsageError
from hpo.objective import Objective
from hpo.study import NoWorkLeft, WorkQueueStudy, best_trial, open_study
from hpo.text import describe_trial
from model.speed import parse_speed
from storage import open_storage

MAX_RETRIES = 3  # a trial that fails this often is left FAIL instead of queued again


class WorkerFailed(Exception):
    """The worker stopped because trials kept failing; the message says why."""


@dataclass(frozen=True)
class WorkerOptions:
    storage_url: str
    study_name: str
    device: str = "auto"
    max_trials: int | None = None  # this worker's own limit; the study's budget applies too
    sampler_seed: int | None = None
    speed: str = "auto"  # see model.speed.parse_speed
    max_consecutive_failures: int = 3


@dataclass
class WorkerSummary:
    states: Counter[str]
    seconds: float

    @property
    def trials(self) -> int:
        return sum(self.states.values())


def run_worker(options: WorkerOptions, say: Callable[[str], None] = print) -> WorkerSummary:
    storage = open_storage(options.storage_url)
    study = open_study(storage, options.study_name, options.sampler_seed)
    config = study.config
    device = resolve_device(options.device)
    try:
        speed = parse_speed(options.speed, device)
    except ValueError as error:
        raise UsageError(f"--speed: {error}") from None
    data = study_data(config)
    pipeline = study_pipeline(config, data, device)
    objective = Objective(config, pipeline, data.num_classes, speed)
    say(
        f"worker: study {options.study_name!r} ({config.sampler}, {config.dataset}, "
        f"preset {config.preset}) on {device} [{', '.join(speed.names()) or 'plain fp32'}], "
        f"{pipeline.train_size} training images"
    )
    states: Counter[str] = Counter()
    failures_in_a_row = 0
    started = time.perf_counter()

    def on_trial_done(study: optuna.Study, trial: FrozenTrial) -> None:
        states[trial.state.name] += 1
        say(describe_trial(trial, best_trial(study)))

    while options.max_trials is None or states.total() < options.max_trials:
        try:
            study.optimize(objective, n_trials=1, catch=(), callbacks=[on_trial_done])
            failures_in_a_row = 0
        except NoWorkLeft:
            break
        except (Exception, KeyboardInterrupt) as error:
            _requeue_failed(study, objective.last_trial_number)
            if isinstance(error, KeyboardInterrupt):
                raise
            states["FAIL"] += 1
            failures_in_a_row += 1
            say(f"trial {objective.last_trial_number} failed: {type(error).__name__}: {error}")
            if failures_in_a_row >= options.max_consecutive_failures:
                raise WorkerFailed(
                    f"{failures_in_a_row} trials failed in a row, last: "
                    f"{type(error).__name__}: {error}"
                ) from error
    return WorkerSummary(states, time.perf_counter() - started)


def _requeue_failed(study: WorkQueueStudy, number: int | None) -> None:
    """Queue a failed trial's parameters again so the grid point or budget slot is not lost."""
    if number is None:
        return
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.RUNNING:
        # Interrupted before Optuna recorded the failure (Ctrl-C during bookkeeping).
        study.tell(number, state=TrialState.FAIL)
        trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.FAIL:
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)
