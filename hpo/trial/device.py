"""Choosing the training device from `--device auto|cpu|cuda|cuda:N`."""

from __future__ import annotations

import torch

from hpo.errors import UsageError
from model.speed import SpeedOptions, parse_speed


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine")
        index_text = spec.partition(":")[2]
        if index_text and (
            not index_text.isdigit() or int(index_text) >= torch.cuda.device_count()
        ):
            raise UsageError(
                f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device(spec)
    raise UsageError(f"invalid --device {spec!r}; use auto, cpu, cuda or cuda:N")


def resolve_speed(spec: str, device: torch.device) -> SpeedOptions:
    """`--speed` for `device` (see model.speed.parse_speed), as a usage error when unknown."""
    try:
        return parse_speed(spec, device)
    except ValueError as error:
        raise UsageError(f"--speed: {error}") from None
