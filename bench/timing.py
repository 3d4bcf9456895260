"""Small helpers shared by the benchmarks: device sync, machine description."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch


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
