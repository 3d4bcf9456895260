"""Training steps replayed from a CUDA graph: one launch per batch instead of about a hundred.

The seed CNN is so small that an eager training step on a large GPU is bound by kernel launches
from Python, not by arithmetic (BENCHMARKS.md). A CUDA graph records the whole step (forward,
backward, SGD update, metric sums) once and replays it for each batch, with the batch copied
into static input buffers first.

- The SGD kernels capture the learning rate as a constant and the schedule changes it once per
  epoch, so the step is captured again at the start of every epoch (a few milliseconds).
- CUDA graphs need warm-up steps before the first capture (momentum buffers, cuDNN's algorithm
  choice); the first batches of the first epoch run eagerly on a side stream for that. They are
  real training steps: nothing is run twice or skipped.
- A smaller last batch runs eagerly, with the same step and the same sums.

On the CPU there are no graphs: `capture` returns the step itself, so the same buffers, order and
warm-up logic run eagerly and the tests can check them against plain training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

WARMUP_STEPS = 3


class Step(Protocol):
    loss_sum: torch.Tensor
    correct: torch.Tensor
    device: torch.device

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None: ...


def _capture_cuda(run: Callable[[], None]) -> Callable[[], None]:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay


def _capture_none(run: Callable[[], None]) -> Callable[[], None]:
    return run


class GraphedSteps:
    def __init__(self, step: Step, batch_size: int) -> None:
        self.step = step
        self.batch_size = batch_size
        self._on_cuda = step.device.type == "cuda"
        self._capture = _capture_cuda if self._on_cuda else _capture_none
        self._warmups_left = WARMUP_STEPS
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._replay: Callable[[], None] | None = None
        self.captures = 0

    def start_epoch(self) -> None:
        self._replay = None  # the learning rate may have changed: capture again

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != self.batch_size:
            self.step(images, labels)
            return
        if self._warmups_left > 0:
            self._warmups_left -= 1
            self._warm_up(images, labels)
            return
        if self._static is None:
            self._static = (images.clone(), labels.clone())
        else:
            self._static[0].copy_(images)
            self._static[1].copy_(labels)
        if self._replay is None:
            static_images, static_labels = self._static
            self._replay = self._capture(lambda: self.step(static_images, static_labels))
            self.captures += 1
        self._replay()

    def _warm_up(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not self._on_cuda:
            self.step(images, labels)
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.step(images, labels)
        torch.cuda.current_stream().wait_stream(side)
