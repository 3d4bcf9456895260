"""A worker: join a study, take queued trials until none are left, print a line per trial.

Failure handling, so that no worker ever leaves the study in a state the next one cannot carry on
from:
- a trial whose worker died (SIGKILL, power loss) stops sending heartbeats; after the grace
  period any worker marks it FAIL and queues it again, and the worker that takes it resumes from
  its last checkpoint;
- SIGTERM: the trial is handed back (queued again) at once and the worker exits 143;
- an exception in a trial: the trial is queued again (at most MAX_RETRIES times) and the worker
  goes on; it gives up after several failures in a row;
- a trial that another worker took over (its heartbeat looked stale) is left to that worker;
- a database outage: storage calls wait for it to come back (storage.resilient).
A worker whose queue is empty waits while other workers' trials run, since a dead one's trial may
come back to the queue, and exits when the study has nothing queued or running. A worker started
on such a study exits before it imports torch or loads the dataset (about 10 s on a slow CPU).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import TakenOver, UsageError
from hpo.results.text import describe_trial
from hpo.study.queue import NoWorkLeft, WorkQueueStudy, best_trial, open_study, retry_dead_trials
from hpo.trial.preemption import Preempted, Preemption
from storage import open_storage
from storage.resilient import with_retries
from storage.sqlite_lock import one_worker_per_sqlite_file

MAX_RETRIES = 3  # a trial that fails this often is left FAIL instead of queued again


class WorkerFailed(Exception):
    """The worker stopped because trials kept failing; the message says why."""


class WorkerPreempted(Exception):
    """SIGTERM: the running trial was handed back; the message says which."""


@dataclass(frozen=True)
class WorkerOptions:
    storage_url: str
    study_name: str
    device: str = "auto"
    max_trials: int | None = None  # this worker's own limit; the study's queue applies too
    sampler_seed: int | None = None
    speed: str = "auto"  # see model.speed.parse_speed
    checkpoint_dir: str | None = None  # default: $HPO_CHECKPOINT_DIR, else ./checkpoints
    heartbeat_s: int = 10
    grace_s: int = 60  # a trial without a heartbeat for this long is taken to be dead
    outage_s: float = 600.0  # how long to wait for an unavailable database
    poll_s: float = 5.0  # how often an idle worker looks for trials to come back
    max_consecutive_failures: int = 3


@dataclass
class WorkerSummary:
    states: Counter[str]
    seconds: float

    @property
    def trials(self) -> int:
        return sum(self.states.values())


def run_worker(options: WorkerOptions, say: Callable[[str], None] = print) -> WorkerSummary:
    if options.grace_s <= options.heartbeat_s:
        raise UsageError("--grace must be longer than --heartbeat")
    preemption = Preemption()
    with preemption.installed(), one_worker_per_sqlite_file(options.storage_url):
        storage = open_storage(
            options.storage_url,
            heartbeat_interval=options.heartbeat_s,
            grace_period=options.grace_s,
            stale_trial_callback=_retry_callback(options.outage_s),
            outage_s=options.outage_s,
        )
        study = open_study(storage, options.study_name, options.sampler_seed)
        retry_dead_trials(study, options.grace_s, _retry_callback(options.outage_s))
        if not _has_work(study):
            return WorkerSummary(Counter(), 0.0)
        return _work(study, options, preemption, say)


def _work(
    study: WorkQueueStudy,
    options: WorkerOptions,
    preemption: Preemption,
    say: Callable[[str], None],
) -> WorkerSummary:
    # Imported here, once there is work: they bring torch (see the module's docstring).
    from hpo.results.progress import EpochProgress
    from hpo.trial.checkpoints import (
        CHECKPOINT_ENV,
        DEFAULT_CHECKPOINT_DIR,
        AsyncCheckpoints,
        CheckpointStore,
    )
    from hpo.trial.data import study_data, study_pipeline
    from hpo.trial.device import resolve_device, resolve_speed
    from hpo.trial.objective import Objective

    config = study.config
    device = resolve_device(options.device)
    speed = resolve_speed(options.speed, device)
    data = study_data(config)
    pipeline = study_pipeline(config, data, device)
    checkpoints = AsyncCheckpoints(
        CheckpointStore(
            options.checkpoint_dir or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT_DIR
        )
    )
    progress = EpochProgress(config.epochs)
    objective = Objective(
        config,
        pipeline,
        data.num_classes,
        speed,
        checkpoints,
        preemption,
        progress=(lambda number, metrics: progress.update(metrics, f"trial {number} "))
        if progress.enabled
        else None,
    )
    say(
        f"worker {os.getpid()}: study {options.study_name!r} ({config.sampler}, "
        f"{config.dataset}, preset {config.preset}) on {device} "
        f"[{', '.join(speed.names()) or 'plain fp32'}], {pipeline.train_size} training images, "
        f"checkpoints in {checkpoints.store.root.resolve()}"
    )
    states: Counter[str] = Counter()
    failures_in_a_row = 0
    started = time.perf_counter()

    def on_trial_done(study: optuna.Study, trial: FrozenTrial) -> None:
        states[trial.state.name] += 1
        say(describe_trial(trial, best_trial(study)))

    while options.max_trials is None or states.total() < options.max_trials:
        objective.last_trial_number = None
        queue_empty = False
        try:
            study.optimize(objective, n_trials=1, catch=(), callbacks=[on_trial_done])
            failures_in_a_row = 0
        except NoWorkLeft:
            queue_empty = True
        except Preempted:
            number = objective.last_trial_number
            checkpoints.flush()
            _requeue(study, number, options.outage_s)
            raise WorkerPreempted(
                "SIGTERM: stopped" + (f"; trial {number} handed back" if number is not None else "")
            ) from None
        except KeyboardInterrupt:
            checkpoints.flush()
            _requeue(study, objective.last_trial_number, options.outage_s)
            raise
        except (TakenOver, UpdateFinishedTrialError):
            # Our heartbeat looked stale to another worker, which failed and queued our trial.
            say(f"trial {objective.last_trial_number} was taken over by another worker; moving on")
        except Exception as error:
            if _queued_again(study, objective.last_trial_number):
                # Taken over: Optuna's own `tell` then fails ("Cannot tell a FAIL trial").
                say(
                    f"trial {objective.last_trial_number} was taken over by another worker; "
                    "moving on"
                )
                continue
            _requeue(study, objective.last_trial_number, options.outage_s)
            states["FAIL"] += 1
            failures_in_a_row += 1
            say(f"trial {objective.last_trial_number} failed: {type(error).__name__}: {error}")
            if failures_in_a_row >= options.max_consecutive_failures:
                raise WorkerFailed(
                    f"{failures_in_a_row} trials failed in a row, last: "
                    f"{type(error).__name__}: {error}"
                ) from error
        if queue_empty:
            if not _others_running(study):
                break
            try:
                with preemption.interruptible():
                    time.sleep(options.poll_s)
            except Preempted:
                raise WorkerPreempted("SIGTERM: stopped while waiting for trials") from None
            retry_dead_trials(study, options.grace_s, _retry_callback(options.outage_s))
    return WorkerSummary(states, time.perf_counter() - started)


def _has_work(study: optuna.Study) -> bool:
    """Trials queued, or running ones that could come back to the queue if their worker died."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def _others_running(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _requeue(study: WorkQueueStudy, number: int | None, outage_s: float) -> None:
    """Queue a failed trial's parameters again so the grid point or budget slot is not lost."""
    if number is None:
        return
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.RUNNING:
        # Interrupted before Optuna recorded the failure.
        try:
            study.tell(number, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            return  # another worker finished it (and queued it again) meanwhile
        trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.FAIL:
        _retry_callback(outage_s)(study, trial)


def _queued_again(study: optuna.Study, number: int | None) -> bool:
    """Whether a retry of trial `number` exists already (made by whoever failed it)."""
    return number is not None and any(
        number in t.system_attrs.get("retry_history", []) for t in study.get_trials(deepcopy=False)
    )


def _retry_callback(outage_s: float = 0.0) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's retry (queue a failed trial again, at most MAX_RETRIES times), made safe to repeat:
    a retry that exists already is not queued twice, so the call can wait out a database outage
    (storage.resilient) even if an attempt committed before its connection was cut."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def queue_again(study: optuna.Study, trial: FrozenTrial) -> None:
        def attempt() -> None:
            if not _queued_again(study, trial.number):
                retry(study, trial)

        with_retries(attempt, outage_s, "queue a failed trial again")

    return queue_again
