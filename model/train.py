"""The one training loop: SGD over device-resident batches, one metrics record per epoch.

It is driven by a `TrainConfig` and reports through a per-epoch callback that may ask it to stop,
so that the same loop serves the Optuna objective (which owns reporting, patience and pruning)
and plain retraining.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from model.host_copy import copy_into, same_layout, to_host
from model.hyperparams import Hyperparams
from model.metrics import EpochHistory, EpochMetrics
from model.network import SeedCNN
from model.pipeline import DevicePipeline
from model.presets import Preset
from model.speed import PLAIN, SpeedOptions
from model.step_graph import GraphedSteps

EVAL_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    hyperparams: Hyperparams
    max_epochs: int
    preset: Preset
    seed: int = 0
    speed: SpeedOptions = PLAIN

    # The optimizer's settings: the tuned value where the hyper-parameters hold one, else the
    # preset's (the seed's stages fix them by hand).
    @property
    def momentum(self) -> float:
        tuned = self.hyperparams.momentum
        return self.preset.momentum if tuned is None else tuned

    @property
    def lr_gamma(self) -> float | None:
        """The ExponentialLR factor; None for a constant learning rate (no scheduler)."""
        tuned = self.hyperparams.lr_gamma
        gamma = self.preset.lr_gamma if tuned is None else tuned
        return None if gamma is None or gamma == 1.0 else gamma

    @property
    def weight_decay(self) -> float:
        tuned = self.hyperparams.weight_decay
        return 0.0 if tuned is None else tuned

    @property
    def nesterov(self) -> bool:
        return bool(self.hyperparams.nesterov)


# Called after every epoch; returning True stops training after that epoch.
EpochCallback = Callable[[EpochMetrics], bool]


def network_args(config: TrainConfig, pipeline: DevicePipeline, num_classes: int) -> dict[str, Any]:
    """`SeedCNN`'s arguments for this run, by name: what a saved model file rebuilds it from."""
    return {
        "in_channels": int(pipeline.test_images.shape[1]),
        "num_classes": num_classes,
        "image_size": pipeline.input_size,
        "p_dropout": config.hyperparams.p_dropout if config.preset.dropout else None,
        "batch_norm": config.preset.batch_norm,
    }


def build_network(config: TrainConfig, pipeline: DevicePipeline, num_classes: int) -> nn.Module:
    return SeedCNN(**network_args(config, pipeline, num_classes)).to(pipeline.device)


@dataclass(kw_only=True)
class TrainState:
    """Everything needed to continue training after `history[-1].epoch` as if never stopped."""

    history: list[EpochMetrics]
    network: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    cpu_rng: torch.Tensor  # dropout and init on the CPU
    data_rng: torch.Tensor  # shuffling, crops and flips
    cuda_rng: torch.Tensor | None = None  # dropout on CUDA
    # The network's weights after its best epoch so far (`EpochMetrics.better_than`).
    best_network: dict[str, Any] | None = None

    @property
    def epoch(self) -> int:
        return self.history[-1].epoch if self.history else 0


class Training:
    """One training run, epoch by epoch: iterate `epochs()`, stop whenever, snapshot `state()`.

    Built fresh, or from a `TrainState` to continue a run that was interrupted; either way the
    epochs that follow are the same, to the last bit on the CPU.
    """

    def __init__(
        self,
        config: TrainConfig,
        pipeline: DevicePipeline,
        num_classes: int,
        resume: TrainState | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        device = pipeline.device
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        network = build_network(config, pipeline, num_classes)
        if config.speed.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        torch.backends.cudnn.benchmark = config.speed.cudnn_benchmark
        # The compiled module shares its parameters with `network`, which is what is saved.
        # torch.compile returns a module that runs compiled; typed as the module it wraps.
        self._step_network: nn.Module = (
            cast(nn.Module, torch.compile(network)) if config.speed.compile else network
        )
        self.optimizer = torch.optim.SGD(
            network.parameters(),
            lr=config.hyperparams.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
        self.scheduler = (
            torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_gamma)
            if config.lr_gamma is not None
            else None
        )
        # The run's epochs and its best one; the objective's epoch book reads the same history.
        self.history = EpochHistory()
        # A host copy of the weights after the best epoch so far (`keep_weights_as_best`).
        self.best_network: dict[str, Any] | None = None
        self._spare_weights: dict[str, Any] | None = None
        if resume is not None:
            self._restore(resume)
        self._step = TrainStep(self._step_network, self.optimizer, config.speed, device)
        self._runner = (
            GraphedSteps(self._step, config.hyperparams.batch_size)
            if config.speed.cuda_graph
            else None
        )

    def epochs(self) -> Iterator[EpochMetrics]:
        """Train the remaining epochs, yielding each one's metrics as it ends."""
        for epoch in range(len(self.history) + 1, self.config.max_epochs + 1):
            started = time.perf_counter()
            learning_rate = self.optimizer.param_groups[0]["lr"]
            train_loss, train_accuracy = self.train_pass()
            test_loss, test_accuracy, test_top5 = self.test_pass()
            val_loss, val_accuracy = self.validation_pass()
            if self.scheduler is not None:
                self.scheduler.step()
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                test_loss=test_loss,
                test_accuracy=test_accuracy,
                test_top5=test_top5,
                learning_rate=learning_rate,
                seconds=time.perf_counter() - started,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
            )
            if self.history.add(metrics):  # the new best epoch: keep its weights
                self.keep_weights_as_best()
            yield metrics

    @property
    def best(self) -> EpochMetrics | None:
        return self.history.best

    def train_pass(self) -> tuple[float, float]:
        """One pass over the training set: its mean loss and accuracy (no schedule step)."""
        return _train_epoch(
            self.network, self.pipeline, self.config, self.generator, self._step, self._runner
        )

    def test_pass(self) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 accuracy on the test set."""
        return evaluate(self._step_network, self.pipeline, self.config.speed)

    def keep_weights_as_best(self) -> None:
        """Copy the network's weights (batch-norm statistics included) to `best_network`.

        Two host buffers alternate, as the checkpoint's do: the copy goes into the one that is
        not the current best. That one is safe to overwrite: the only checkpoint that may still
        be being written is the last epoch's, which holds the current best.
        """
        weights = self.network.state_dict()
        spare = self._spare_weights
        reuse = spare is not None and same_layout(spare, weights)
        copy = copy_into(spare, weights) if reuse else to_host(weights)
        self._spare_weights, self.best_network = self.best_network, copy

    def validation_pass(self) -> tuple[float | None, float | None]:
        """Mean loss and accuracy on the validation split; (None, None) without one."""
        if self.pipeline.val_labels is None:
            return None, None
        loss, accuracy, _ = evaluate(
            self._step_network, self.pipeline, self.config.speed, split="validation"
        )
        return loss, accuracy

    def state(self, into: TrainState | None = None) -> TrainState:
        """A copy of the run's state in host memory (safe to write while training goes on).

        With `into` (an earlier copy no longer in use), the tensors are copied into its memory
        instead of freshly allocated ones: per-epoch checkpoints then cost one memcpy.
        """
        cuda = self.pipeline.device.type == "cuda"
        network = self.network.state_dict()
        optimizer = self.optimizer.state_dict()
        if (
            into is not None
            and same_layout(into.network, network)
            and same_layout(into.optimizer, optimizer)
        ):
            network, optimizer = (
                copy_into(into.network, network),
                copy_into(into.optimizer, optimizer),
            )
        else:
            network, optimizer = to_host(network), to_host(optimizer)
        return TrainState(
            history=list(self.history.epochs),
            network=network,
            optimizer=optimizer,
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
            cpu_rng=torch.get_rng_state(),
            data_rng=self.generator.get_state(),
            cuda_rng=torch.cuda.get_rng_state(self.pipeline.device) if cuda else None,
            best_network=self.best_network,
        )

    def _restore(self, state: TrainState) -> None:
        self.network.load_state_dict(state.network)
        self.optimizer.load_state_dict(state.optimizer)
        if self.scheduler is not None and state.scheduler is not None:
            self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.cpu_rng)
        self.generator.set_state(state.data_rng)
        if state.cuda_rng is not None and self.pipeline.device.type == "cuda":
            torch.cuda.set_rng_state(state.cuda_rng, self.pipeline.device)
        self.history = EpochHistory.of(state.history)
        self.best_network = state.best_network


def train(
    config: TrainConfig,
    pipeline: DevicePipeline,
    num_classes: int,
    on_epoch: EpochCallback | None = None,
) -> tuple[nn.Module, list[EpochMetrics]]:
    """Train from scratch; returns the network after the last epoch and every epoch's metrics."""
    run = Training(config, pipeline, num_classes)
    for metrics in run.epochs():
        if on_epoch is not None and on_epoch(metrics):
            break
    return run.network, run.history.epochs


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
    pipeline: DevicePipeline,
    config: TrainConfig,
    generator: torch.Generator,
    step: TrainStep,
    runner: GraphedSteps | None = None,
) -> tuple[float, float]:
    network.train()
    step.loss_sum.zero_()
    step.correct.zero_()
    if runner is not None:
        runner.start_epoch()
    run = runner or step
    for images, labels in pipeline.train_batches(config.hyperparams.batch_size, generator):
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
    network: nn.Module,
    pipeline: DevicePipeline,
    speed: SpeedOptions = PLAIN,
    split: str = "test",
) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 accuracy over the whole test (or validation) split."""
    network.eval()
    loss_sum = torch.zeros((), device=pipeline.device)
    top1 = torch.zeros((), device=pipeline.device, dtype=torch.int64)
    top5 = torch.zeros((), device=pipeline.device, dtype=torch.int64)
    count = 0
    for images, labels in pipeline.eval_batches(EVAL_BATCH, split):
        count += int(labels.shape[0])
        with _autocast(pipeline.device, speed):
            logits = network(_layout(images, speed))
        # The loss in fp32 whatever the autocast: it is what patience and the export compare.
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = ranked == labels[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
    return loss_sum.item() / count, top1.item() / count, top5.item() / count
