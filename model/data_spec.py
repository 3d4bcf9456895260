"""The datasets a study can name, and which of their images a run loads.

Apart from the loaders (model.datasets), so that the command line starts without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("cifar10", "digits", "synthetic")


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which images: all that a study, a retraining or the seed's stages need to load them."""

    dataset: str
    data_dir: str = "data"  # where CIFAR-10 is, or is downloaded to
    subset: int | None = None  # only the first N training images (and N/4 test images)
    seed: int = 0  # draws the synthetic images
    validation: int | None = None  # hold this many training images out, for selection
