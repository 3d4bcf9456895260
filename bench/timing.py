"""What the benchmarks share: device sync, timing, the machine's description, and the one
set-up of synthetic CIFAR-sized images on a device."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch

from model.datasets import ImageData, augment_spec, make_synthetic
from model.pipeline import DevicePipeline


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], object]) -> float:
    sync(device)
    started = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - started


def machine(device: torch.device) -> str:
    cpus = os.cpu_count()
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {cpus} CPU cores, torch {torch.__version__}"
    return (
        f"{platform.processor() or platform.machine()}, {cpus} CPU cores, torch {torch.__version__}"
    )


def synthetic_images(n_train: int, n_test: int | None = None) -> ImageData:
    """CIFAR-sized synthetic images (32×32×3, 10 classes): the data every benchmark times on,
    with a test set a fifth of the training set unless given."""
    return make_synthetic(n_train=n_train, n_test=n_train // 5 if n_test is None else n_test)


def cifar_pipeline(
    data: ImageData, device: torch.device, dataset: str = "cifar10"
) -> DevicePipeline:
    """`data` on `device`, normalized and augmented as the dataset is in a trial."""
    return DevicePipeline(data, device, normalize=True, augment=augment_spec(dataset))
