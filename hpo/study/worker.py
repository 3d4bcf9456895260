"""A worker: join a study, take queued trials until none are left, print a line per trial.

Failure handling, so that no worker ever leaves the study in a state the next one cannot carry on
from (hpo.study.recovery does the queueing again):
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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UsageError
from hpo.record.summary import describe_trial
from hpo.study.queue import NoWorkLeft, WorkQueueStudy, open_study
from hpo.study.recovery import (
    StaleTrialWatch,
    queued_again,
    requeue,
    retry_callback,
    retry_dead_trials,
)
from hpo.study.samplers import sampled_independently
from hpo.trial.preemption import Preempted, Preemption, stop_signal
from hpo.workqueue.cache import top_trials
from hpo.workqueue.queries import count_trials
from storage import StorageURL, open_storage
from storage.errors import TakenOver
from storage.retries import DEFAULT_OUTAGE_S
from storage.sqlite_lock import one_worker_per_sqlite_file

if TYPE_CHECKING:  # imported once there is work: they bring torch (see the module's docstring)
    from hpo.trial.checkpoints import AsyncCheckpoints
    from hpo.trial.kept_models import ModelStore
    from hpo.trial.objective import Objective


class WorkerFailed(Exception):
    """The worker stopped because trials kept failing; the message says why."""


class WorkerPreempted(Exception):
    """SIGTERM: the running trial was handed back; the message says which."""


class WorkerInterrupted(WorkerPreempted):
    """Ctrl-C (SIGINT): the running trial was handed back, as on SIGTERM."""


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    storage_url: StorageURL
    study_name: str
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    max_trials: int | None = None  # this worker's own limit; the study's queue applies too
    sampler_seed: int | None = None  # TPE seed of this worker (None: fresh entropy)
    speed: str = "auto"  # see model.speed.parse_speed
    checkpoint_dir: str | None = None  # default: $HPO_CHECKPOINT_DIR, else ./checkpoints
    heartbeat_s: int = 10  # seconds between heartbeats of the running trial
    grace_s: int = 60  # a trial without a heartbeat for this long is taken to be dead
    outage_s: float = DEFAULT_OUTAGE_S  # how long to wait for an unavailable database
    poll_s: float = 5.0  # how often an idle worker looks for trials to come back
    max_consecutive_failures: int = 3


@dataclass(kw_only=True)
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
            stale_trial_callback=retry_callback(),
            outage_s=options.outage_s,
        )
        study = open_study(storage, options.study_name, options.sampler_seed)
        worker = Worker(study=study, options=options, say=say)
        worker.retry_dead_trials()
        if not _has_work(study):
            return WorkerSummary(states=Counter(), seconds=0.0)
        return worker.run(preemption)


class Worker:
    """The loop of one worker: one trial at a time, and what to do with each way it ends."""

    def __init__(
        self,
        *,
        study: WorkQueueStudy,
        options: WorkerOptions,
        say: Callable[[str], None],
    ) -> None:
        self.study = study
        self.options = options
        self.say = say
        self.states: Counter[str] = Counter()
        self.failures_in_a_row = 0
        self.models: ModelStore | None = None  # set when the worker starts training
        # One look for dead workers' trials at a time (the loop's and the watch thread's): a
        # look fails a dead trial and then queues its retry, and the loop's last look before
        # leaving must not fall between the two.
        self._looking = threading.Lock()

    def retry_dead_trials(self) -> None:
        with self._looking:
            retry_dead_trials(self.study, self.study.rdb, retry_callback())

    def run(self, preemption: Preemption) -> WorkerSummary:
        objective, checkpoints = self._start(preemption)
        with StaleTrialWatch(self.retry_dead_trials, self.options.heartbeat_s):
            return self._loop(objective, checkpoints, preemption)

    def _loop(
        self, objective: Objective, checkpoints: AsyncCheckpoints, preemption: Preemption
    ) -> WorkerSummary:
        started = time.perf_counter()
        while self.options.max_trials is None or self.states.total() < self.options.max_trials:
            if self.run_one(objective, checkpoints):
                continue
            # The queue is empty: wait while others run, since a dead one's trial may come back.
            if not _others_running(self.study):
                # A last look, after any look in progress has queued what it failed.
                self.retry_dead_trials()
                if _has_work(self.study):
                    continue
                break
            try:
                with preemption.interruptible():
                    time.sleep(self.options.poll_s)
            except Preempted:
                raise WorkerPreempted("SIGTERM: stopped while waiting for trials") from None
            self.retry_dead_trials()
        return WorkerSummary(states=self.states, seconds=time.perf_counter() - started)

    def _start(self, preemption: Preemption) -> tuple[Objective, AsyncCheckpoints]:
        """Load the data onto the device and make the objective; say what this worker runs."""
        from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
        from hpo.trial.data import device_pipeline, load_data
        from hpo.trial.device import resolve_device, resolve_speed
        from hpo.trial.folders import checkpoint_root
        from hpo.trial.kept_models import model_store
        from hpo.trial.objective import Objective
        from hpo.trial.progress import EpochProgress

        config = self.study.config
        device = resolve_device(self.options.device)
        speed = resolve_speed(self.options.speed, device)
        data = load_data(
            config.data_spec,
            elsewhere=f"on this machine: the study reads it from --data-dir {config.data_dir}, "
            "set at hpo create (a relative folder counts from where the worker runs)",
        )
        pipeline = device_pipeline(data, config.dataset, config.preset, device)
        root = checkpoint_root(self.options.checkpoint_dir)
        checkpoints = AsyncCheckpoints(CheckpointStore(root))
        self.models = model_store(self.options.checkpoint_dir)
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
            models=self.models,
            class_names=data.class_names,
        )
        self.say(
            f"worker {os.getpid()}: study {self.options.study_name!r} ({config.sampler}, "
            f"{config.dataset}, preset {config.preset}) on {device} "
            f"[{', '.join(speed.names()) or 'plain fp32'}], {pipeline.train_size} training images, "
            f"checkpoints in {checkpoints.store.root.resolve()}"
        )
        independent = sampled_independently(config)
        if independent:
            self.say(
                f"note: CMA-ES does not model categorical parameters; Optuna samples "
                f"{', '.join(independent)} independently, at random"
            )
        return objective, checkpoints

    def run_one(self, objective: Objective, checkpoints: AsyncCheckpoints | None) -> bool:
        """Run one queued trial, however it ends; False when the queue was empty. Every way a
        trial ends is decided here. (`checkpoints` None: a run without them, as the study-scale
        benchmark measures the worker's own per-trial cost.)"""
        attempt = _Attempt(objective)
        try:
            # `Study.optimize` alone runs Optuna's heartbeat thread and its stale-trial check. It
            # calls `ask` outside its try block around the objective, so an `ask` that finds no
            # work raises NoWorkLeft before any trial exists (the contract test checks it).
            self.study.optimize(attempt, n_trials=1, catch=(), callbacks=[self._on_trial_done])
            self.failures_in_a_row = 0
        except NoWorkLeft:
            return False
        except (Preempted, KeyboardInterrupt) as stop:
            signal_name = stop_signal(stop)
            if checkpoints is not None:
                checkpoints.flush()  # the next worker resumes from the last epoch
            requeue(self.study, attempt.number, handed_back_on=signal_name)
            number = attempt.number
            handed_back = (
                f"; trial {number} handed back (queued again, resumes from its checkpoint)"
                if number is not None
                else ""
            )
            stopped = WorkerInterrupted if isinstance(stop, KeyboardInterrupt) else WorkerPreempted
            raise stopped(f"{signal_name}: stopped{handed_back}") from None
        except Exception as error:
            # Taken over: our heartbeat looked stale to another worker, which failed and queued
            # our trial. The objective says so (TakenOver), and Optuna's own `tell` then fails
            # ("Cannot tell a FAIL trial"); or the trial was failed after the objective's last
            # write, and only the retry that exists already says so. Whoever failed it queues
            # the retry; doing it here too could queue two.
            if (
                attempt.taken_over
                or isinstance(error, TakenOver)
                or queued_again(self.study, attempt.number)
            ):
                self._say_taken_over(attempt.number)
            else:
                self._on_failure(attempt.number, error)
        return True

    def _on_trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.states[trial.state.name] += 1
        # The top of the ranking, for the line's best and the kept models.
        if self.models is None:
            self.say(describe_trial(trial, next(iter(top_trials(study, 1)), None)))
            return
        from hpo.trial.kept_models import PUSHED_OUT_WINDOW, prune_models  # brings torch

        keep = self.study.config.keep_models
        ranking = top_trials(study, keep + PUSHED_OUT_WINDOW)
        self.say(describe_trial(trial, ranking[0] if ranking else None))
        try:
            prune_models(trial, ranking, keep, self.models)
        except OSError as error:  # the next trial's pruning tries again
            self.say(f"warning: kept models not pruned: {error}")

    def _on_failure(self, number: int | None, error: Exception) -> None:
        requeue(self.study, number)
        self.states["FAIL"] += 1
        self.failures_in_a_row += 1
        self.say(f"trial {number} failed: {type(error).__name__}: {error}")
        if self.failures_in_a_row >= self.options.max_consecutive_failures:
            raise WorkerFailed(
                f"{self.failures_in_a_row} trials failed in a row, last: "
                f"{type(error).__name__}: {error}"
            ) from error

    def _say_taken_over(self, number: int | None) -> None:
        self.say(f"trial {number} was taken over by another worker; moving on")


@dataclass
class _Attempt:
    """One run of the objective, as the worker sees it: which trial it took, and whether that
    trial turned out to be another worker's. Made afresh for each trial and read only by
    `Worker.run_one`."""

    objective: Objective
    number: int | None = None
    taken_over: bool = False

    def __call__(self, trial: optuna.Trial) -> float:
        self.number = trial.number
        try:
            return self.objective(trial)
        except TakenOver:
            self.taken_over = True
            raise


def _has_work(study: optuna.Study) -> bool:
    """Trials queued, or running ones that could come back to the queue if their worker died."""
    states = (TrialState.WAITING, TrialState.RUNNING)
    return count_trials(study, states) > 0


def _others_running(study: optuna.Study) -> bool:
    return count_trials(study, (TrialState.RUNNING,)) > 0
