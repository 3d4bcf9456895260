"""Checks of the device pipeline that its CPU and CUDA tests share (test_pipeline.py,
test_cuda.py): the same crops, flips and distribution on any device."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from model.datasets import AugmentSpec, ImageData
from model.pipeline import DevicePipeline


def raw(batch: torch.Tensor) -> torch.Tensor:
    """Undo the [0, 1] scaling that an unnormalized pipeline applies, as ToTensor does."""
    return (batch * 255).round()


def position_images(count: int, side: int = 32) -> ImageData:
    """Images whose pixels spell their own coordinates (channel 0 = row, channel 1 = column),
    with random content in channel 2."""
    rows = torch.arange(side, dtype=torch.uint8)[:, None].expand(count, side, side)
    cols = torch.arange(side, dtype=torch.uint8)[None, :].expand(count, side, side)
    noise = torch.randint(
        0, 256, (count, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    images = torch.stack([rows, cols, noise], dim=1).contiguous()
    labels = torch.zeros(count, dtype=torch.int64)
    return ImageData(
        name="positions",
        train_images=images,
        train_labels=labels,
        test_images=images[:4],
        test_labels=labels[:4],
        num_classes=10,
    )


def check_crop_and_flip_distribution(device: torch.device) -> None:
    """Shared with the CUDA test: the same checks on any device."""
    count = 20_000
    pipeline = DevicePipeline(
        position_images(count),
        device,
        normalize=False,
        augment=AugmentSpec(crop=28, padding=0, flip=True),
    )
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.randperm(
        count, generator=torch.Generator(device=device).manual_seed(0), device=device
    )
    ((batch, _),) = list(pipeline.train_batches(count, generator))
    batch = raw(batch).cpu()
    order = order.cpu()
    top = batch[:, 0, 0, 0].round().long()
    corner_cols = batch[:, 1, 0, [0, -1]].round().long()
    flipped = corner_cols[:, 0] > corner_cols[:, 1]
    left = torch.where(flipped, corner_cols[:, 1], corner_cols[:, 0])
    # Every pixel is the one torchvision's crop (and hflip) gives for that image and offset.
    sources = pipeline.train_images.cpu()[order]
    for i in range(300):
        expected = TF.crop(sources[i], int(top[i]), int(left[i]), 28, 28)
        if flipped[i]:
            expected = TF.hflip(expected)
        assert torch.equal(batch[i], expected.float())
    # Every offset in 0..4 × 0..4 is reachable and about equally likely, as RandomCrop(28).
    counts = torch.bincount(top * 5 + left, minlength=25).double()
    assert counts.numel() == 25 and bool((counts > 0).all())
    expected = count / 25
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 52.6  # 99.9th percentile of χ² with 24 degrees of freedom
    # Flips: p = 0.5 per image, independent of the offset.
    assert abs(float(flipped.double().mean()) - 0.5) < 0.015
    assert abs(float(flipped[top == 0].double().mean()) - 0.5) < 0.05
