"""Device-resident data: the whole dataset on the training device, batches built in a few ops.

The seed's pipeline decodes every image through PIL in DataLoader workers. Here the uint8
images are moved to the device once; each training batch is gathered, randomly cropped (an
independent offset per image, as `RandomCrop`), flipped (p=0.5 per image, as
`RandomHorizontalFlip`) and normalized with batched tensor operations. The test set is
center-cropped and normalized once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.datasets import AugmentSpec, ImageData


@dataclass(frozen=True)
class ChannelStats:
    mean: tuple[float, ...]  # per channel, pixel values scaled to [0, 1]
    std: tuple[float, ...]


def channel_stats(images: torch.Tensor) -> ChannelStats:
    """Per-channel mean and std of uint8 images in [0, 1] scale (the seed's Q20: train set only)."""
    scaled = images.to(torch.float64).div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return ChannelStats(
        mean=tuple(scaled.mean(dim=1).tolist()),
        std=tuple(scaled.std(dim=1).clamp_min(1e-6).tolist()),
    )


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Same pixels as torchvision's `CenterCrop(size)` (it rounds the offset to nearest)."""
    height, width = images.shape[-2:]
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return images[..., top : top + size, left : left + size]


class DevicePipeline:
    """Batches for one dataset on one device, with or without normalization and augmentation."""

    def __init__(
        self,
        data: ImageData,
        device: torch.device,
        normalize: bool,
        augment: AugmentSpec | None,
    ) -> None:
        self.device = device
        self.augment = augment
        stats = (
            channel_stats(data.train_images)
            if normalize
            else ChannelStats(mean=(0.0,) * data.channels, std=(1.0,) * data.channels)
        )
        self.stats = stats
        shape = (1, data.channels, 1, 1)
        self._mean = torch.tensor(stats.mean, dtype=torch.float32, device=device).view(shape)
        self._scale = (1.0 / (255.0 * torch.tensor(stats.std, dtype=torch.float32))).to(device)
        self._scale = self._scale.view(shape)
        train = data.train_images
        if augment is not None and augment.padding:
            # RandomCrop(padding=p) pads the raw image with zeros before the crop.
            train = F.pad(train, (augment.padding,) * 4)
        self.train_images = train.to(device)
        self.train_labels = data.train_labels.to(device)
        test = data.test_images
        if augment is not None:
            test = center_crop(test, augment.crop)
        self.test_images = self._normalize(test.to(device))
        self.test_labels = data.test_labels.to(device)

    @property
    def input_size(self) -> int:
        return int(self.test_images.shape[-1])

    @property
    def train_size(self) -> int:
        return int(self.train_labels.shape[0])

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        # (x/255 - mean) / std, written as one multiply-add on the uint8 values.
        return (images.to(torch.float32) - self._mean * 255.0) * self._scale

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalized batches (the last one may be smaller)."""
        count = self.train_size
        order = torch.randperm(count, generator=generator, device=generator.device)
        order = order.to(self.device)
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            if self.augment is None:
                images = self.train_images[index]
            else:
                images = self._gather_augmented(index, generator)
            yield self._normalize(images), self.train_labels[index]

    def _gather_augmented(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pick, crop and flip a batch with two gathers.

        Each image gets its own offset in [0, H - crop] × [0, W - crop] and, if flips are on, a
        coin toss; a flip reverses the order of the columns it reads. The source pixel of every
        output pixel is one flat index per image, shared by its channels (an expanded view, so
        the index is never materialised per channel).
        """
        spec = self.augment
        assert spec is not None
        n = index.shape[0]
        channels, height, width = self.train_images.shape[1:]
        draws = torch.randint(
            0, height - spec.crop + 1, (2, n), generator=generator, device=generator.device
        ).to(self.device)
        steps = torch.arange(spec.crop, device=self.device)
        rows = draws[0][:, None] + steps  # n × crop
        if spec.flip:
            flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
            column_steps = torch.where(flips.to(self.device)[:, None], steps.flip(0), steps)
        else:
            column_steps = steps.expand(n, spec.crop)
        cols = draws[1][:, None] + column_steps  # n × crop
        pixels = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, -1)
        picked = self.train_images[index].view(n, channels, height * width)
        cropped = picked.gather(2, pixels.expand(n, channels, spec.crop * spec.crop))
        return cropped.view(n, channels, spec.crop, spec.crop)

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.test_labels.shape[0], batch_size):
            yield (
                self.test_images[start : start + batch_size],
                self.test_labels[start : start + batch_size],
            )
