"""The seed report's CNN (Q10), with the dropout and batch-norm variants of its later stages."""

from __future__ import annotations

import math

import torch
from torch import nn

CONV_CHANNELS = (32, 64, 64)
KERNEL = 5
HIDDEN_UNITS = 1000


def pooled_size(size: int) -> int:
    """Spatial size after the three 2×2 pools; the third rounds up (28×28 crops: 7 → 4)."""
    size = size // 2
    size = size // 2
    return math.ceil(size / 2)


class SeedCNN(nn.Module):
    """conv5×5(32) → pool → conv5×5(64) → pool → conv5×5(64) → pool(ceil) → fc1000 → fc10.

    Every convolution keeps its input size (padding 2), so the fully connected input depends on
    the image size alone: 32×32 and 28×28 both give 64·4·4 = 1024, digits' 8×8 gives 64·1·1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        p_dropout: float | None = None,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, out_channels in enumerate(CONV_CHANNELS):
            layers.append(nn.Conv2d(channels, out_channels, KERNEL, padding=KERNEL // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=index == len(CONV_CHANNELS) - 1))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        side = pooled_size(image_size)
        head: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(channels * side * side, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
        ]
        if p_dropout is not None:
            head.append(nn.Dropout(p_dropout))
        head.append(nn.Linear(HIDDEN_UNITS, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))
