"""Patience, pruning and divergence, through the real Optuna trial and pruner."""

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpo.record.config import StudyConfig
from hpo.trial.data import device_pipeline, load_data
from hpo.trial.epoch_book import MEDIAN_WARMUP_EPOCHS, build_pruner
from hpo.trial.objective import EpochBook, Objective
from hpo.trial.writer import TrialWriter
from hpo.workqueue.optuna_private import sampler_view, trial_id
from model.metrics import EpochMetrics
from model.train import Training


def _metrics(epoch: int, test_loss: float) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        train_loss=1.0,
        train_accuracy=0.5,
        test_loss=test_loss,
        test_accuracy=0.5 + epoch / 1000,
        test_top5=0.9,
        learning_rate=0.01,
        seconds=0.1,
    )


def _train_epoch(book: EpochBook, metrics: EpochMetrics) -> bool:
    """What the training loop does: add the epoch to the run's history, then the book judges."""
    book.history.add(metrics)
    return book.on_epoch()


@pytest.fixture(params=["background writer", "synchronous report"])
def writes(request) -> str:
    return request.param


def _run_book(
    losses: list[float],
    patience: int,
    max_epochs: int = 200,
    pruner: str = "none",
    writes: str = "background writer",
) -> EpochBook:
    # A fixed name: Hyperband puts a trial in a bracket by its study name and number.
    study = optuna.create_study(
        study_name="book", pruner=build_pruner(pruner, patience, max_epochs)
    )
    book = EpochBook(trial=study.ask(), patience=patience, max_epochs=max_epochs)
    if writes == "background writer":
        book.writer = TrialWriter(book.trial.storage, trial_id(book.trial))
    for epoch, loss in enumerate(losses, start=1):
        if _train_epoch(book, _metrics(epoch, loss)):
            break
    if book.writer is not None:
        book.writer.close()
    # Either way, the study holds every reported value.
    reported = study.trials[0].intermediate_values
    assert reported == {e: loss for e, loss in enumerate(losses[: len(reported)], start=1)}
    assert len(reported) == book.epochs_run - (book.stop_reason == "diverged")
    return book


@pytest.mark.parametrize("best", [1, 5, 23])
@pytest.mark.parametrize("patience", [1, 3, 10])
def test_best_epoch_k_stops_at_exactly_k_plus_patience(best: int, patience: int, writes) -> None:
    # Falling until `best`, then rising (with noise that never beats the best) for good.
    losses = [2.0 - 0.05 * e for e in range(1, best + 1)]
    losses += [losses[-1] + 0.01 + 0.001 * (i % 3) for i in range(100)]
    book = _run_book(losses, patience, writes=writes)
    assert book.best.epoch == best
    assert book.epochs_run == best + patience
    assert book.stop_reason == "patience"


def test_a_late_improvement_resets_patience(writes) -> None:
    losses = [1.0, 0.9, 0.95, 0.96, 0.8, 0.85, 0.86, 0.87, 0.88]
    book = _run_book(losses, patience=3, writes=writes)
    assert book.best.epoch == 5 and book.epochs_run == 8


def test_equal_loss_is_no_improvement_for_the_best_epoch(writes) -> None:
    book = _run_book([1.0, 0.5, 0.5, 0.6, 0.7, 0.8], patience=10, max_epochs=6, writes=writes)
    assert book.best.epoch == 2 and book.stop_reason == "max_epochs" and book.epochs_run == 6


def test_max_epochs_ends_the_trial(writes) -> None:
    book = _run_book([1.0 / e for e in range(1, 50)], patience=10, max_epochs=12, writes=writes)
    assert book.epochs_run == 12 and book.stop_reason == "max_epochs" and book.best.epoch == 12


def test_non_finite_loss_stops_at_once_as_diverged(writes) -> None:
    book = _run_book([2.0, 1.5, math.nan, 1.0], patience=10, writes=writes)
    assert book.epochs_run == 3 and book.stop_reason == "diverged" and book.best.epoch == 2
    attrs = book.record().to_attrs()
    assert attrs["curves"]["test_loss"] == [2.0, 1.5, None]


def test_median_pruner_ends_hopeless_trials_as_pruned() -> None:
    study = optuna.create_study(pruner=build_pruner("median", 10, 100))
    for _ in range(6):  # good trials fill the median
        trial = study.ask()
        for epoch in range(1, 11):
            trial.report(0.1, epoch)
        study.tell(trial, 0.1)
    book = EpochBook(trial=study.ask(), patience=10, max_epochs=100)
    book.writer = TrialWriter(book.trial.storage, trial_id(book.trial))
    for epoch in range(1, 20):
        if _train_epoch(book, _metrics(epoch, 5.0 - epoch * 0.01)):
            break
    # Optuna's MedianPruner may prune from step n_warmup_steps on.
    assert book.stop_reason == "pruned" and book.epochs_run == MEDIAN_WARMUP_EPOCHS


def _objective(sampler: str, **config) -> tuple[optuna.Study, Objective]:
    study_config = StudyConfig(sampler=sampler, dataset="synthetic", subset=96, **config)
    data = load_data(study_config.data_spec)
    pipeline = device_pipeline(data, study_config.dataset, study_config.preset, torch.device("cpu"))
    study = optuna.create_study(
        pruner=build_pruner(study_config.pruner, study_config.patience, study_config.epochs)
    )
    return study, Objective(study_config, pipeline, data.num_classes)


def test_a_real_trial_completes_with_its_best_loss_and_attrs() -> None:
    study, objective = _objective("grid", epochs=8, patience=2)
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert trial.state == optuna.trial.TrialState.COMPLETE
    curve = attrs["curves"]["test_loss"]
    assert len(curve) == attrs["epochs_run"]
    assert trial.value == min(curve) == curve[attrs["best_epoch"] - 1]
    assert attrs["test_accuracy"] == attrs["curves"]["test_accuracy"][attrs["best_epoch"] - 1]
    assert attrs["stop_reason"] in ("patience", "max_epochs")
    if attrs["stop_reason"] == "patience":
        assert attrs["epochs_run"] == attrs["best_epoch"] + 2
    assert trial.intermediate_values == {e: v for e, v in enumerate(curve, start=1)}


# A learning rate of 1e6 lies outside the search range on purpose: Optuna warns, and runs it.
@pytest.mark.filterwarnings("ignore:Fixed parameter learning_rate")
def test_a_diverging_trial_is_pruned_and_never_best() -> None:
    study, objective = _objective("tpe", epochs=5, patience=2, n_trials=2)
    study.enqueue_trial({"learning_rate": 1e6, "batch_size": 64, "p_dropout": 0.5})
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    study.optimize(objective, n_trials=2)
    diverged, sane = study.trials
    assert diverged.state == optuna.trial.TrialState.PRUNED
    assert diverged.user_attrs["stop_reason"] == "diverged"
    assert sane.state == optuna.trial.TrialState.COMPLETE
    assert study.best_trial.number == sane.number


def test_out_of_memory_ends_the_trial_as_oom(monkeypatch) -> None:
    study, objective = _objective("grid", epochs=3, patience=2)
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 512, "p_dropout": 0.5})
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    real_epochs = Training.epochs
    calls = []

    def out_of_memory_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        yield from real_epochs(self)

    monkeypatch.setattr(Training, "epochs", out_of_memory_once)
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.PRUNED
    assert first.user_attrs["stop_reason"] == "oom"
    assert second.state == optuna.trial.TrialState.COMPLETE  # the worker went on


def test_progress_lines_only_on_a_terminal() -> None:
    import io

    from hpo.trial.progress import EpochProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = EpochProgress(10, stream=stream)
        progress.update(_metrics(1, 2.0), "trial 3 ")
        progress.update(_metrics(2, 1.5), "trial 3 ")
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("trial 3 epoch 2/10: train loss")
    assert "test loss 1.5000" in lines[1] and "ETA" in lines[1]
    assert log.getvalue() == ""


def test_hyperband_keeps_tpe_inside_each_trials_bracket() -> None:
    """Optuna narrows a sampler to a trial's Hyperband bracket only when the study's pruner is a
    HyperbandPruner: a wrapper around one made TPE sample from every bracket."""
    pruner = build_pruner("hyperband", patience=10, max_epochs=27)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner)
    for number in range(12):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
        for epoch in range(1, 4):
            trial.report(1.0 / (epoch + number), epoch)
            trial.should_prune()  # as every epoch of a trial asks
        study.tell(trial, 1.0 / (3 + number))
    trial = study.ask()
    seen = sampler_view(study, study.trials[trial.number]).get_trials(deepcopy=False)
    assert 0 < len(seen) < len(study.trials)  # one bracket's trials, not all of them
    brackets = {pruner._get_bracket_id(study, t) for t in seen}
    assert brackets == {pruner._get_bracket_id(study, study.trials[trial.number])}


def test_patience_still_ends_trials_complete_under_hyperband(writes) -> None:
    # Patience runs out (epoch 2 + 2) before Hyperband's first rung past epoch 1 decides.
    losses = [1.9, 1.8] + [2.0] * 40
    book = _run_book(losses, patience=2, pruner="hyperband", writes=writes)
    assert book.best.epoch == 2 and book.epochs_run == 4 and book.stop_reason == "patience"


def test_a_trial_failed_by_another_worker_in_its_last_epoch_is_left_to_it(tmp_path) -> None:
    """Its final attributes are refused (the trial is finished), nothing of it is written, and
    its checkpoint stays for the retry that the other worker queued."""
    from hpo.record.lineage import lineage
    from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
    from storage import open_storage, parse_storage_url
    from storage.errors import TakenOver

    url = f"sqlite:///{tmp_path / 'taken.db'}"
    config = StudyConfig(sampler="grid", dataset="synthetic", subset=32, epochs=3, patience=3)
    data = load_data(config.data_spec)
    pipeline = device_pipeline(data, config.dataset, config.preset, torch.device("cpu"))
    study = optuna.create_study(
        storage=open_storage(parse_storage_url(url), create=True), study_name="taken"
    )
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    other_worker = open_storage(parse_storage_url(url))

    def fail_it_in_the_last_epoch(number: int, metrics: EpochMetrics) -> None:
        if metrics.epoch == config.epochs:
            running = study.trials[number]
            assert other_worker.set_trial_state_values(trial_id(running), TrialState.FAIL)

    checkpoints = AsyncCheckpoints(CheckpointStore(tmp_path / "checkpoints"))
    objective = Objective(
        config,
        pipeline,
        data.num_classes,
        checkpoints=checkpoints,
        progress=fail_it_in_the_last_epoch,
    )
    with pytest.raises(TakenOver):  # what the worker decides on (hpo.study.worker)
        objective(study.ask())
    checkpoints.flush()
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL and "epochs_run" not in trial.user_attrs
    assert checkpoints.store.path("taken", lineage(trial)).exists()
