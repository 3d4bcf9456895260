"""The seed's Q10 table: output size and weight count of each layer, from the real module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.network import SeedCNN

_LAYER_NAMES = {nn.Conv2d: "Conv", nn.MaxPool2d: "Pool", nn.Linear: "fc"}


@dataclass(frozen=True, kw_only=True)
class LayerRow:
    name: str
    output_shape: tuple[int, ...]  # H×W×C for images, (units,) for fc layers, as the seed writes
    weights: int  # with biases
    bias: int


def layer_table(
    image_size: int = 32, in_channels: int = 3, num_classes: int = 10
) -> list[LayerRow]:
    """Run one image through the seed network (no dropout, no batch norm) and record each layer."""
    network = SeedCNN(in_channels, num_classes, image_size)
    rows = [
        LayerRow(
            name="Input", output_shape=(image_size, image_size, in_channels), weights=0, bias=0
        )
    ]
    counters = {"Conv": 0, "Pool": 0, "fc": 0}
    numbering = 0

    def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal numbering
        kind = _LAYER_NAMES[type(module)]
        counters[kind] += 1
        numbering = counters[kind] if kind != "fc" else counters["Conv"] + counters["fc"]
        shape = tuple(output.shape[1:])
        if len(shape) == 3:  # C×H×W → the seed's H×W×C
            shape = (shape[1], shape[2], shape[0])
        weights = sum(p.numel() for p in module.parameters())
        module_bias = getattr(module, "bias", None)
        bias = module_bias.numel() if isinstance(module_bias, torch.Tensor) else 0
        rows.append(
            LayerRow(name=f"{kind}{numbering}", output_shape=shape, weights=weights, bias=bias)
        )

    hooks = [m.register_forward_hook(record) for m in network.modules() if type(m) in _LAYER_NAMES]
    with torch.no_grad():
        network(torch.zeros(1, in_channels, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return rows


def format_table(rows: list[LayerRow]) -> str:
    """The table as text, with the cumulative count both with biases and as the seed counts."""
    lines = [
        f"{'layer':<7}{'output':>14}{'weights':>11}{'cumulative':>13}{'seed count':>13}",
    ]
    total = seed_total = 0
    for row in rows:
        seed_weights = row.weights - row.bias if row.name.startswith("fc") else row.weights
        total += row.weights
        seed_total += seed_weights
        shape = "×".join(str(d) for d in row.output_shape)
        lines.append(f"{row.name:<7}{shape:>14}{row.weights:>11,}{total:>13,}{seed_total:>13,}")
    lines.append(
        f"total: {total:,} weights with biases; {seed_total:,} as the seed counts "
        "(its table leaves out the fc biases)"
    )
    return "\n".join(lines)
