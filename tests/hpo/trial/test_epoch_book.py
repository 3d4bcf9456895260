"""The epoch book with a validation split: the best epoch, patience and the reported value go by
the validation loss, and the test loss of that epoch is kept for the record."""

from __future__ import annotations

import optuna

from hpo.trial.epoch_book import EpochBook, PatienceOrPruner
from model.metrics import EpochMetrics

# The validation loss is lowest at epoch 2; the test loss goes on falling until epoch 5.
VAL = [0.9, 0.5, 0.6, 0.7, 0.8]
TEST = [1.0, 0.8, 0.7, 0.6, 0.5]


def _epoch(epoch: int) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        train_loss=1.0,
        train_accuracy=0.5,
        test_loss=TEST[epoch - 1],
        test_accuracy=epoch / 10,
        test_top5=1.0,
        learning_rate=0.01,
        seconds=0.1,
        val_loss=VAL[epoch - 1],
        val_accuracy=1 - epoch / 10,
    )


def _train_epoch(book: EpochBook, metrics: EpochMetrics) -> bool:
    """What the training loop does: add the epoch to the run's history, then the book judges."""
    book.history.add(metrics)
    return book.on_epoch()


def test_the_validation_loss_chooses_the_best_epoch_and_spends_the_patience() -> None:
    study = optuna.create_study(pruner=PatienceOrPruner(patience=3))  # as `hpo create` makes
    book = EpochBook(trial=study.ask(), patience=3, max_epochs=len(VAL))
    stops = [_train_epoch(book, _epoch(epoch)) for epoch in range(1, len(VAL) + 1)]
    # Epoch 5 has the lowest test loss, but the validation loss has not fallen for 3 epochs.
    assert stops == [False, False, False, False, True]
    assert book.stop_reason == "patience" and book.best is not None and book.best.epoch == 2
    attrs = book.record().to_attrs()
    assert (attrs["best_epoch"], attrs["test_loss"], attrs["val_accuracy"]) == (2, TEST[1], 0.8)
    curves = book.json_curves()
    assert curves["val_loss"] == VAL and curves["test_loss"] == TEST
