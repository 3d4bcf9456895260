"""Device-resident data: the whole dataset on the training device, batches built in a few ops.

The seed's pipeline decodes every image through PIL in DataLoader workers. Here the uint8
images are moved to the device once. At the start of each epoch the whole training set is
shuffled, randomly cropped (an independent offset per image, as `RandomCrop`) and flipped (p=0.5
per image, as `RandomHorizontalFlip`) in a few large gathers; each batch is then a slice of that,
normalized. The test set is center-cropped and normalized once.

Why per epoch and not per batch: on a GPU the seed CNN's training step is so short that the
dozen-odd small kernels of a per-batch gather cost more in launches than in work. A batch is now
three kernels (the slices are views), and the random draws are three per epoch. The price is one
uint8 copy of the cropped training set per worker (118 MB for CIFAR-10).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.datasets import AugmentSpec, ImageData

# Images cropped per gather at the start of an epoch, by device type. On a GPU: few, large
# gathers (the index of one is 8192 × 28 × 28 int64, 51 MB). On a CPU: gathers that stay in cache;
# 512 measured 10–20% faster than gathering per batch on the 2-core machine, 2048 slower.
GATHER_CHUNK = {"cuda": 8192}
GATHER_CHUNK_DEFAULT = 512


@dataclass(frozen=True, kw_only=True)
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


def normalization(stats: ChannelStats, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift and scale that normalize uint8 images as `(x - shift) * scale`: (x/255 - mean)
    / std written as one multiply-add, the same arithmetic wherever images are normalized."""
    shape = (1, len(stats.mean), 1, 1)
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=device).view(shape)
    scale = (1.0 / (255.0 * torch.tensor(stats.std, dtype=torch.float32))).to(device)
    return mean * 255.0, scale.view(shape)


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
        self._shift, self._scale = normalization(stats, device)
        train = data.train_images
        if augment is not None and augment.padding:
            # RandomCrop(padding=p) pads the raw image with zeros before the crop.
            train = F.pad(train, (augment.padding,) * 4)
        self.train_images = train.to(device)
        self.train_labels = data.train_labels.to(device)
        self.crop = augment.crop if augment is not None else None  # center crop of eval images
        self.test_images = self._prepare_eval(data.test_images)
        self.test_labels = data.test_labels.to(device)
        # The validation split, prepared as the test set is: what selection goes by, if present.
        self.val_images: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        if data.val_images is not None and data.val_labels is not None:
            self.val_images = self._prepare_eval(data.val_images)
            self.val_labels = data.val_labels.to(device)

    def _prepare_eval(self, images: torch.Tensor) -> torch.Tensor:
        """Images to evaluate on: center-cropped (with augmentation) and normalized, once."""
        if self.crop is not None:
            images = center_crop(images, self.crop)
        return self._normalize(images.to(self.device))

    @property
    def input_size(self) -> int:
        return int(self.test_images.shape[-1])

    @property
    def train_size(self) -> int:
        return int(self.train_labels.shape[0])

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        # (x/255 - mean) / std, written as one multiply-add on the uint8 values.
        return (images.to(torch.float32) - self._shift) * self._scale

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalized batches (the last one may be smaller).

        The epoch's random draws all come from `generator`, in a fixed order (the shuffle, the
        offsets, the flips), so a run restored with the generator's state repeats the epoch.
        """
        count = self.train_size
        order = torch.randperm(count, generator=generator, device=generator.device)
        order = order.to(self.device)
        if self.augment is None:
            images = self.train_images[order]
        else:
            images = self._augmented(order, generator)
        labels = self.train_labels[order]
        for start in range(0, count, batch_size):
            stop = start + batch_size
            yield self._normalize(images[start:stop]), labels[start:stop]

    def _augmented(self, order: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The images `order` names, each cropped at its own offset and maybe flipped (uint8).

        Each image gets an offset in [0, H - crop] × [0, W - crop] and, if flips are on, a coin
        toss; a flip reverses the order of the columns it reads. The source pixel of every
        output pixel is one flat index per image, shared by its channels (an expanded view, so
        the index is never materialised per channel).
        """
        spec = self.augment
        assert spec is not None
        n = order.shape[0]
        channels, height, width = self.train_images.shape[1:]
        draws = torch.randint(
            0, height - spec.crop + 1, (2, n), generator=generator, device=generator.device
        ).to(self.device)
        steps = torch.arange(spec.crop, device=self.device)
        if spec.flip:
            flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
            column_steps = torch.where(flips.to(self.device)[:, None], steps.flip(0), steps)
        else:
            column_steps = steps.expand(n, spec.crop)
        rows = draws[0][:, None] + steps  # n × crop, small: made for the whole epoch at once
        cols = draws[1][:, None] + column_steps
        out = torch.empty(
            (n, channels, spec.crop, spec.crop), dtype=self.train_images.dtype, device=self.device
        )
        chunk = GATHER_CHUNK.get(self.device.type, GATHER_CHUNK_DEFAULT)
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            size = min(chunk, n - start)
            pixels = (rows[part, :, None] * width + cols[part, None, :]).view(size, 1, -1)
            picked = self.train_images[order[part]].view(size, channels, height * width)
            cropped = picked.gather(2, pixels.expand(size, channels, spec.crop * spec.crop))
            out[part] = cropped.view(size, channels, spec.crop, spec.crop)
        return out

    def eval_batches(
        self, batch_size: int, split: str = "test"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test (or validation) split in order, normalized (and center-cropped)."""
        images, labels = (
            (self.test_images, self.test_labels)
            if split == "test"
            else (self.val_images, self.val_labels)
        )
        if images is None or labels is None:
            raise ValueError(f"this pipeline has no {split} split")
        for start in range(0, labels.shape[0], batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]
