"""A line per epoch with losses, accuracy and an ETA, on a terminal only (logs stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from model.train import EpochMetrics


class EpochProgress:
    def __init__(
        self,
        total_epochs: int,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.total = total_epochs
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.perf_counter()

    def line(self, metrics: EpochMetrics, label: str | None = None) -> str:
        if metrics.epoch == 1:
            self.started = time.perf_counter() - metrics.seconds  # a new run starts
        elapsed = time.perf_counter() - self.started
        eta = elapsed / metrics.epoch * (self.total - metrics.epoch)
        return (
            f"{self.label if label is None else label}epoch {metrics.epoch}/{self.total}: "
            f"train loss {metrics.train_loss:.4f} "
            f"acc {100 * metrics.train_accuracy:.1f}% | test loss {metrics.test_loss:.4f} acc "
            f"{100 * metrics.test_accuracy:.1f}% | {metrics.seconds:.1f} s, ETA {eta:.0f} s"
        )

    def update(self, metrics: EpochMetrics, label: str | None = None) -> None:
        if self.enabled:
            print(self.line(metrics, label), file=self.stream, flush=True)
