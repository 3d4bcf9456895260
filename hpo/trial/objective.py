"""The Optuna objective: one trial = one training run, reported to the trial every epoch."""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Callable

import optuna
import torch

from hpo.errors import cannot_write
from hpo.record.config import StudyConfig
from hpo.record.curves_artifact import curves_artifact_meta
from hpo.record.lineage import lineage
from hpo.record.seed_grid import suggest
from hpo.record.trial_record import TrialError, TrialRecord, handed_back_record
from hpo.trial.checkpoints import AsyncCheckpoints
from hpo.trial.epoch_book import EpochBook
from hpo.trial.kept_models import ModelStore, keep_model, model_file_payload
from hpo.trial.preemption import Preempted, Preemption, stop_signal
from hpo.trial.writer import LIVE_CURVES_INTERVAL_S, TrialWriter
from hpo.workqueue.optuna_private import frozen_when_asked, trial_id
from hpo.workqueue.trial_writes import artifact_attr, check_still_running, set_trial_attrs
from model.metrics import EpochMetrics
from model.pipeline import DevicePipeline
from model.presets import PRESETS
from model.speed import PLAIN, SpeedOptions
from model.train import TrainConfig, Training
from storage.errors import TakenOver

TAKEOVER_CHECK_S = 10.0  # how often a running trial checks that it is still its worker's


class Objective:
    """Callable objective for `study.optimize`, holding the device data across trials.

    With a checkpoint store, the state after every epoch is saved, and a trial that retries an
    interrupted one resumes from the interrupted one's last epoch: its earlier epochs are
    reported again from the checkpoint, then training goes on from where it stopped.

    A trial that another worker took over raises `TakenOver` (storage.errors) out of the call;
    what follows is the worker's to decide (hpo.study.worker).
    """

    def __init__(
        self,
        config: StudyConfig,
        pipeline: DevicePipeline,
        num_classes: int,
        speed: SpeedOptions = PLAIN,
        checkpoints: AsyncCheckpoints | None = None,
        preemption: Preemption | None = None,
        progress: Callable[[int, EpochMetrics], None] | None = None,
        live_curves_s: float | None = LIVE_CURVES_INTERVAL_S,
        models: ModelStore | None = None,
        class_names: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.num_classes = num_classes
        self.speed = speed
        self.checkpoints = checkpoints
        self.preemption = preemption or Preemption()
        self.progress = progress  # told of every epoch (trial number, metrics)
        self.live_curves_s = live_curves_s  # None: curves written at the trial's end only
        self.models = models  # where completed trials keep their best-epoch weights (None: not)
        self.class_names = class_names

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except (Preempted, KeyboardInterrupt) as stop:
            # Handed back (its worker queues it again), not a failure: recorded as such while
            # the trial still runs, before Optuna marks it FAIL.
            with contextlib.suppress(Exception):  # the database may be away; the hand-back is not
                set_trial_attrs(trial, handed_back_record(stop_signal(stop)).to_attrs())
            raise
        except (optuna.TrialPruned, TakenOver):
            raise  # not failures: pruned, or another worker's now
        except Exception as error:
            record_error(trial, error)
            raise

    def _run(self, trial: optuna.Trial) -> float:
        hyperparams = suggest(
            trial, self.config.sampler, self.config.preset, self.config.search_space
        )
        # The trial as `study.ask` read it (with the parameters just suggested) serves the
        # checkpoint lineage, the pruner, and a seed that `hpo confirm` queued with it.
        frozen = frozen_when_asked(trial)
        queued = TrialRecord.from_trial(frozen)
        train_config = TrainConfig(
            hyperparams=hyperparams,
            max_epochs=self.config.epochs,
            preset=PRESETS[self.config.preset],
            seed=self.config.seed if queued.seed is None else queued.seed,
            speed=self.speed,
        )
        study_name = trial.study.study_name
        key_of_trial = trial_id(trial)
        key = lineage(frozen)
        resume = self.checkpoints.load(study_name, key) if self.checkpoints else None
        started = TrialRecord(
            device=str(self.pipeline.device),
            speed=tuple(self.speed.names()),
            resumed_from_epoch=resume.epoch if resume is not None else None,
        )
        set_trial_attrs(
            trial,
            started.to_attrs(),
            # the live figure, listed in optuna-dashboard
            artifact_attr(curves_artifact_meta(key_of_trial)),
        )
        writer = TrialWriter(trial.storage, key_of_trial, self.live_curves_s)
        book = EpochBook(
            trial=trial,
            patience=self.config.patience,
            max_epochs=self.config.epochs,
            writer=writer,
            pruning_view=frozen,
        )
        best_weights = None
        try:
            run = Training(train_config, self.pipeline, self.num_classes, resume)
            book.history = run.history  # one history: restored from the checkpoint on resume
            try:
                if not book.replay():
                    self._train(run, book, study_name, key)
            finally:
                best_weights = run.best_network
        except torch.OutOfMemoryError:
            book.stop_reason = "oom"
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        finally:
            # Every epoch's value written before the trial ends, and no live curves after the
            # final ones below.
            writer.close()
        writer.check()  # TakenOver if the writes were refused: the retry needs the checkpoint
        # Refused with TakenOver, writing nothing, if another worker failed the trial meanwhile.
        set_trial_attrs(trial, book.record().to_attrs())
        if self.checkpoints is not None:
            self.checkpoints.remove(study_name, key)
        best = book.best
        if book.stop_reason in ("diverged", "pruned", "oom") or best is None:
            raise optuna.TrialPruned(f"{book.stop_reason} at epoch {book.epochs_run}")
        if best_weights is not None:
            self._keep_model(trial, train_config, best, best_weights)
        return best.selection_loss

    def _keep_model(
        self,
        trial: optuna.Trial,
        train_config: TrainConfig,
        best: EpochMetrics,
        weights: dict[str, object],
    ) -> None:
        if self.models is None or self.config.keep_models == 0:
            return
        payload = model_file_payload(
            train_config=train_config,
            pipeline=self.pipeline,
            num_classes=self.num_classes,
            class_names=self.class_names,
            preset=self.config.preset,
            weights=weights,
            metrics=best,
            study=trial.study.study_name,
            trial=trial.number,
            dataset=self.config.dataset,
            seed=train_config.seed,
            subset=self.config.subset,
            validation=self.config.validation,
            selected_on=self.config.selected_on,
        )
        try:
            keep_model(trial, self.models, payload)
        except OSError as error:  # the result stands without its weights: no reason to rerun
            print(
                f"warning: trial {trial.number}'s weights not kept: "
                f"{cannot_write(self.models.folder / f'trial-{trial.number}.pt', error)}",
                file=sys.stderr,
            )

    def _train(self, run: Training, book: EpochBook, study_name: str, key: int) -> None:
        epochs = run.epochs()
        last_check = time.monotonic()
        while True:
            with self.preemption.interruptible():
                metrics = next(epochs, None)
            if metrics is None:
                return
            if self.progress is not None:
                self.progress(book.trial.number, metrics)
            if self.checkpoints is not None and metrics.epoch < self.config.epochs:
                # Copied before the book wakes its writer thread, whose database work would
                # otherwise hold the GIL while the copy waits; so an epoch that ends the trial
                # early (patience, pruning) is copied for nothing.
                self.checkpoints.save(study_name, key, run.state)
            if book.on_epoch():
                return
            # The writer finds out first when its write is refused; else ask every 10 s.
            if book.writer is not None:
                book.writer.check()
            if time.monotonic() - last_check > TAKEOVER_CHECK_S:
                check_still_running(book.trial)
                last_check = time.monotonic()
            if self.preemption.requested and self.checkpoints is not None:
                self.checkpoints.flush()  # the next worker resumes from this epoch
            self.preemption.check()


def record_error(trial: optuna.Trial, error: BaseException) -> None:
    """Store the exception with the trial (type, message, the traceback's last lines), so that
    the failure can be read from the database, not only from one worker's output."""
    failed = TrialRecord(error=TrialError.of(error))
    with contextlib.suppress(Exception):  # the database may be what failed; keep the real error
        set_trial_attrs(trial, failed.to_attrs())
