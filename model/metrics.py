"""One epoch's metrics, and the rule that picks a run's best epoch (no torch: the study and the
record read them before any training is set up)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, kw_only=True)
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float  # fraction in [0, 1]
    test_loss: float  # mean over the whole test set
    test_accuracy: float
    test_top5: float
    learning_rate: float  # the rate used during this epoch
    seconds: float
    # On the held-out validation split, when the study has one (`hpo create --validation`).
    val_loss: float | None = None
    val_accuracy: float | None = None

    @property
    def selection_loss(self) -> float:
        """The loss that patience, pruning and the best epoch go by: the validation loss when
        there is a validation split, else the test loss (the seed's rule)."""
        return self.test_loss if self.val_loss is None else self.val_loss

    @property
    def finite(self) -> bool:
        return all(
            math.isfinite(value)
            for value in (self.train_loss, self.test_loss, self.val_loss)
            if value is not None
        )

    def better_than(self, other: EpochMetrics | None) -> bool:
        """A strictly lower selection loss than `other`'s (the first of equals stays best)."""
        return self.finite and (other is None or self.selection_loss < other.selection_loss)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def best_epoch(history: Iterable[EpochMetrics]) -> EpochMetrics | None:
    """The epoch with the lowest finite selection loss (the first one on ties), if any."""
    return EpochHistory.of(history).best


@dataclass(kw_only=True)
class EpochHistory:
    """A run's epochs in order, and its best one: the one book of both.

    The training loop adds each epoch as it ends and learns from `add` whether it is the new
    best (it then keeps the weights); the objective's epoch book reads the same history for
    patience, the reports and the curves, and a checkpoint stores its epochs.
    """

    epochs: list[EpochMetrics] = field(default_factory=list)
    best: EpochMetrics | None = None

    @classmethod
    def of(cls, epochs: Iterable[EpochMetrics]) -> EpochHistory:
        history = cls()
        for metrics in epochs:
            history.add(metrics)
        return history

    def add(self, metrics: EpochMetrics) -> bool:
        """Append the epoch that just ended; True when it is the new best."""
        self.epochs.append(metrics)
        if metrics.better_than(self.best):
            self.best = metrics
            return True
        return False

    def take_all(self) -> list[EpochMetrics]:
        """Empty the history and return its epochs (to judge them again, one `add` at a time)."""
        epochs, self.epochs, self.best = self.epochs, [], None
        return epochs

    @property
    def last(self) -> EpochMetrics | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def epochs_run(self) -> int:
        """The number of the last epoch; 0 before the first."""
        return self.epochs[-1].epoch if self.epochs else 0

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[EpochMetrics]:
        return iter(self.epochs)

    def __getitem__(self, index: int) -> EpochMetrics:
        return self.epochs[index]
