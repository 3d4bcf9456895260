"""The datasets a study can name, and which of their images a run loads.

Apart from the loaders (model.datasets), so that the command line starts without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("cifar10", "digits", "synthetic")
# Training images of each dataset (digits: its 80% training split; synthetic: when no subset is
# given), so that settings can be checked before anything is loaded.
TRAIN_SIZES = {"cifar10": 50_000, "digits": 1_438, "synthetic": 2_000}


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which images: all that a study, a retraining or the seed's stages need to load them."""

    dataset: str
    data_dir: str = "data"  # where CIFAR-10 is, or is downloaded to
    subset: int | None = None  # only the first N training images (and N/4 test images)
    seed: int = 0  # draws the synthetic images
    validation: int | None = None  # hold this many training images out, for selection

    @property
    def train_size(self) -> int:
        """Training images before the validation split."""
        size = TRAIN_SIZES[self.dataset]
        if self.subset is None:
            return size
        return self.subset if self.dataset == "synthetic" else min(self.subset, size)
