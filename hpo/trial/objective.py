"""The Optuna objective: one trial = one training run, reported to the trial every epoch."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo.errors import TakenOver
from hpo.results.trial_figure import curves_artifact_attr
from hpo.study.config import SEED_ATTR, StudyConfig
from hpo.study.recovery import lineage, record_error
from hpo.study.search_space import suggest
from hpo.trial.checkpoints import AsyncCheckpoints
from hpo.trial.epoch_book import EpochBook
from hpo.trial.kept_models import ModelStore, best_model_payload, keep_model
from hpo.trial.preemption import Preempted, Preemption
from hpo.trial.writer import LIVE_CURVES_INTERVAL_S, TrialWriter
from model.pipeline import DevicePipeline
from model.presets import PRESETS
from model.speed import PLAIN, SpeedOptions
from model.train import EpochMetrics, TrainConfig, Training
from storage import optuna_internals

TAKEOVER_CHECK_S = 10.0  # how often a running trial checks that it is still its worker's


class Objective:
    """Callable objective for `study.optimize`, holding the device data across trials.

    With a checkpoint store, the state after every epoch is saved, and a trial that retries an
    interrupted one resumes from the interrupted one's last epoch: its earlier epochs are
    reported again from the checkpoint, then training goes on from where it stopped.
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
        self.last_trial_number: int | None = None
        # Set when the last trial turned out to be another worker's: Optuna's `tell` then fails
        # with an error of its own, which must not be taken for this trial's failure.
        self.last_trial_taken_over = False

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial_number = trial.number
        self.last_trial_taken_over = False
        try:
            return self._run(trial)
        except (optuna.TrialPruned, TakenOver, Preempted):
            raise  # not failures: pruned, another worker's now, or handed back
        except Exception as error:
            record_error(trial, error)
            raise

    def _run(self, trial: optuna.Trial) -> float:
        train_config = TrainConfig(
            hyperparams=suggest(trial, self.config.sampler, self.config.preset),
            max_epochs=self.config.epochs,
            preset=PRESETS[self.config.preset],
            # A confirmation trial carries its own seed (hpo.study.confirm).
            seed=trial.user_attrs.get(SEED_ATTR, self.config.seed),
            speed=self.speed,
        )
        study_name = trial.study.study_name
        # The trial as `study.ask` read it serves the checkpoint lineage and the pruner.
        trial_id = optuna_internals.trial_id(trial)
        frozen = optuna_internals.frozen_when_asked(trial)
        key = lineage(frozen)
        resume = self.checkpoints.load(study_name, key) if self.checkpoints else None
        optuna_internals.set_trial_attrs(
            trial,
            {"device": str(self.pipeline.device), "speed": self.speed.names()},
            curves_artifact_attr(trial_id),  # the live figure, listed in optuna-dashboard
        )
        writer = TrialWriter(trial.storage, trial_id, self.live_curves_s)
        book = EpochBook(
            trial=trial,
            patience=self.config.patience,
            max_epochs=self.config.epochs,
            writer=writer,
            pruning_view=frozen,
        )
        stopped = False
        best_weights = resume.best_network if resume is not None else None
        try:
            if resume is not None:
                trial.set_user_attr("resumed_from_epoch", resume.epoch)
                stopped = any(book.on_epoch(metrics) for metrics in resume.history)
            if not stopped:
                run = Training(train_config, self.pipeline, self.num_classes, resume)
                try:
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
        writer.check()
        try:
            optuna_internals.set_trial_attrs(trial, book.user_attrs())
        except UpdateFinishedTrialError:  # the trial is finished: another worker failed it
            self._taken_over(trial)  # and its retry needs the checkpoint: leave it
        if self.checkpoints is not None:
            self.checkpoints.remove(study_name, key)
        if book.stop_reason in ("diverged", "pruned", "oom") or book.best is None:
            raise optuna.TrialPruned(f"{book.stop_reason} at epoch {book.epochs_run}")
        if best_weights is not None:
            self._keep_model(trial, train_config, book.best, best_weights)
        return book.best.selection_loss

    def _keep_model(
        self,
        trial: optuna.Trial,
        train_config: TrainConfig,
        best: EpochMetrics,
        weights: dict[str, Any],
    ) -> None:
        if self.models is None or self.config.keep_models == 0:
            return
        payload = best_model_payload(
            study_name=trial.study.study_name,
            trial_number=trial.number,
            config=self.config,
            train_config=train_config,
            pipeline=self.pipeline,
            num_classes=self.num_classes,
            class_names=self.class_names,
            best=best,
            weights=weights,
        )
        try:
            keep_model(trial, self.models, payload)
        except OSError as error:  # the result stands without its weights: no reason to rerun
            print(
                f"warning: trial {trial.number}'s weights not kept in {self.models.folder}: "
                f"{error.strerror or error}",
                file=sys.stderr,
            )

    def _check_still_ours(self, trial: optuna.Trial) -> None:
        # Reporting to a trial that another worker failed raises nothing, so ask the database.
        if trial.storage.get_trial(optuna_internals.trial_id(trial)).state != TrialState.RUNNING:
            self._taken_over(trial)

    def _taken_over(self, trial: optuna.Trial) -> NoReturn:
        self.last_trial_taken_over = True
        raise TakenOver(f"trial {trial.number} was taken over by another worker")

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
            if book.on_epoch(metrics):
                return
            # The writer finds out first when its write is refused; else check every 10 s.
            taken_over = book.writer is not None and book.writer.taken_over
            if taken_over or time.monotonic() - last_check > TAKEOVER_CHECK_S:
                self._check_still_ours(book.trial)
                last_check = time.monotonic()
            if self.preemption.requested and self.checkpoints is not None:
                self.checkpoints.flush()  # the next worker resumes from this epoch
            self.preemption.check()
