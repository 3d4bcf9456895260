"""Optional fast paths for CUDA training, each switched on by name.

Which ones are on by default is decided by measurement (`bench/`, BENCHMARKS.md), not by hope:
`default_speed` holds that decision per device type. None of them changes the training maths
beyond bf16 rounding, and all of them also run on the CPU, where the tests check them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the CLI imports this module and starts without torch
    import torch

FAST_PATHS = ("bf16", "channels_last", "compile", "cudnn_benchmark", "cuda_graph")


@dataclass(frozen=True, kw_only=True)
class SpeedOptions:
    bf16: bool = False  # bf16 autocast for forward and loss (weights and optimizer stay fp32)
    channels_last: bool = False  # NHWC memory layout for the convolutions
    compile: bool = False  # torch.compile the network (compile time is paid once per trial)
    cudnn_benchmark: bool = False  # let cuDNN pick the fastest convolution algorithm
    cuda_graph: bool = False  # replay each training step from a CUDA graph (model.step_graph)

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


PLAIN = SpeedOptions()  # fp32, NCHW, eager: the reference every fast path is compared with


def parse_speed(text: str, device: torch.device) -> SpeedOptions:
    """`auto` (the measured defaults), `none`, or a comma list of FAST_PATHS."""
    if text == "auto":
        return default_speed(device)
    if text == "none":
        return SpeedOptions()
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FAST_PATHS]
    if unknown:
        raise ValueError(
            f"unknown fast path {unknown[0]!r}; use auto, none or a comma list of "
            + ", ".join(FAST_PATHS)
        )
    return SpeedOptions(**{name: True for name in names})


def default_speed(device: torch.device) -> SpeedOptions:
    if device.type != "cuda":
        return SpeedOptions()
    # Measured on an H200 (BENCHMARKS.md): the seed CNN is launch-bound, so CUDA graphs pay and
    # bf16, channels_last and torch.compile do not. See there before changing.
    return SpeedOptions(cudnn_benchmark=True, cuda_graph=True)
