"""The one training loop: SGD over device-resident batches, one metrics record per epoch.

It is driven by a `TrainConfig` and reports through a per-epoch callback that may ask it to stop,
so that the same loop serves the Optuna objective (which owns reporting, patience and pruning)
and plain retraining.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.network import SeedCNN
from model.pipeline import DevicePipeline
from model.presets import Preset
from model.speed import PLAIN, SpeedOptions
from model.step_graph import GraphedSteps

EVAL_BATCH = 1024


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float
    batch_size: int
    p_dropout: float | None  # None: the preset has no dropout
    max_epochs: int
    preset: Preset
    seed: int = 0
    speed: SpeedOptions = PLAIN


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float  # fraction in [0, 1]
    test_loss: float  # mean over the whole test set
    test_accuracy: float
    test_top5: float
    learning_rate: float  # the rate used during this epoch
    seconds: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.train_loss) and math.isfinite(self.test_loss)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# Called after every epoch; returning True stops training after that epoch.
EpochCallback = Callable[[EpochMetrics], bool]


def build_network(
    config: TrainConfig, pipeline: DevicePipeline, channels: int, num_classes: int
) -> nn.Module:
    p_dropout = config.p_dropout if config.preset.dropout else None
    network = SeedCNN(
        channels, num_classes, pipeline.input_size, p_dropout, config.preset.batch_norm
    )
    return network.to(pipeline.device)


def train(
    config: TrainConfig,
    pipeline: DevicePipeline,
    num_classes: int,
    on_epoch: EpochCallback | None = None,
) -> tuple[nn.Module, list[EpochMetrics]]:
    """Train from scratch; returns the network after the last epoch and every epoch's metrics."""
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=pipeline.device).manual_seed(config.seed)
    network = build_network(config, pipeline, int(pipeline.test_images.shape[1]), num_classes)
    if config.speed.channels_last:
        network = network.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = config.speed.cudnn_benchmark
    # The compiled module shares its parameters with `network`, which is what gets returned.
    step_network = torch.compile(network) if config.speed.compile else network
    optimizer = torch.optim.SGD(
        network.parameters(), lr=config.learning_rate, momentum=config.preset.momentum
    )
    scheduler = (
        torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.preset.lr_gamma)
        if config.preset.lr_gamma is not None
        else None
    )
    runner = (
        GraphedSteps(
            TrainStep(step_network, optimizer, config.speed, pipeline.device), config.batch_size
        )
        if config.speed.cuda_graph
        else None
    )
    history: list[EpochMetrics] = []
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy = _train_epoch(
            step_network, optimizer, pipeline, config, generator, runner
        )
        test_loss, test_accuracy, test_top5 = evaluate(step_network, pipeline, config.speed)
        if scheduler is not None:
            scheduler.step()
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            test_top5=test_top5,
            learning_rate=learning_rate,
            seconds=time.perf_counter() - started,
        )
        history.append(metrics)
        if on_epoch is not None and on_epoch(metrics):
            break
    return network, history


class TrainStep:
    """One SGD step on one batch, adding the batch's loss and hits to the epoch's sums.

    The sums stay on the device (one host synchronisation per epoch, not one per batch) and are
    updated in place, so that a CUDA graph that captured this step keeps writing to them.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        speed: SpeedOptions,
        device: torch.device,
    ) -> None:
        self.network = network
        self.optimizer = optimizer
        self.speed = speed
        self.device = device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.speed):
            logits = self.network(_layout(images, self.speed))
            loss = F.cross_entropy(logits, labels)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * labels.shape[0]
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()


def _train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    pipeline: DevicePipeline,
    config: TrainConfig,
    generator: torch.Generator,
    runner: GraphedSteps | None = None,
) -> tuple[float, float]:
    network.train()
    step = (
        runner.step
        if runner is not None
        else TrainStep(network, optimizer, config.speed, pipeline.device)
    )
    step.loss_sum.zero_()
    step.correct.zero_()
    if runner is not None:
        runner.start_epoch()
    run = runner or step
    for images, labels in pipeline.train_batches(config.batch_size, generator):
        run(images, labels)
    count = pipeline.train_size
    return step.loss_sum.item() / count, step.correct.item() / count


def _autocast(device: torch.device, speed: SpeedOptions) -> torch.autocast:
    # No autocast weight cache: a CUDA graph must not capture a cache that is cleared between
    # steps, and the network is too small for the cache to matter.
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=speed.bf16, cache_enabled=False
    )


def _layout(images: torch.Tensor, speed: SpeedOptions) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last) if speed.channels_last else images


@torch.no_grad()
def evaluate(
    network: nn.Module, pipeline: DevicePipeline, speed: SpeedOptions = PLAIN
) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 accuracy over the whole test set."""
    network.eval()
    loss_sum = torch.zeros((), device=pipeline.device)
    top1 = torch.zeros((), device=pipeline.device, dtype=torch.int64)
    top5 = torch.zeros((), device=pipeline.device, dtype=torch.int64)
    for images, labels in pipeline.test_batches(EVAL_BATCH):
        with _autocast(pipeline.device, speed):
            logits = network(_layout(images, speed))
        # The loss in fp32 whatever the autocast: it is what patience and the export compare.
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = ranked == labels[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
    count = int(pipeline.test_labels.shape[0])
    return loss_sum.item() / count, top1.item() / count, top5.item() / count


def best_epoch(history: list[EpochMetrics]) -> EpochMetrics | None:
    """The epoch with the lowest finite test loss (the first one on ties), if any."""
    finite = [m for m in history if math.isfinite(m.test_loss)]
    return min(finite, key=lambda m: (m.test_loss, m.epoch)) if finite else None
