"""Image datasets as uint8 tensors (N×C×H×W) with int64 labels: CIFAR-10, digits, synthetic.

Every source returns the same plain `ImageData`, so the pipeline and the training loop never know
where the images came from.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.data_spec import DATASETS

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_SIDE = 32
CLASS_NAMES = {
    # The label_names of CIFAR-10's batches.meta, in label order.
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    "digits": tuple(str(digit) for digit in range(10)),
}
VALIDATION_SEED = 0  # the validation split is the same in every trial, seed and retraining


class DatasetError(Exception):
    """A dataset that cannot be read; the message says how to provide it."""


class DatasetMissing(DatasetError):
    """A dataset that is not where it was looked for: the caller can say how to point at
    another folder."""


@dataclass(frozen=True, kw_only=True)
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8, N×C×H×W
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    # Held out of the training images (`hpo create --validation`); None: no validation split.
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES.get(self.name, tuple(f"class {i}" for i in range(self.num_classes)))

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


@dataclass(frozen=True, kw_only=True)
class AugmentSpec:
    """How a dataset is augmented when the preset asks for augmentation.

    CIFAR-10 follows the seed (Q22): 28×28 random crops and horizontal flips. Digits are 8×8 and
    lose their meaning when mirrored (the seed's own Q23), so they get ±1 pixel shifts only.
    """

    crop: int
    padding: int
    flip: bool


def augment_spec(name: str) -> AugmentSpec:
    if name == "digits":
        return AugmentSpec(crop=8, padding=1, flip=False)
    return AugmentSpec(crop=28, padding=0, flip=True)


def load_dataset(name: str, data_dir: Path | str = "data", download: bool = True) -> ImageData:
    """Load one of `DATASETS` by name."""
    if name == "cifar10":
        return load_cifar10(Path(data_dir), download=download)
    if name == "digits":
        return load_digits()
    if name == "synthetic":
        return make_synthetic()
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_cifar10(data_dir: Path, download: bool = True) -> ImageData:
    """Read CIFAR-10 from torchvision's on-disk layout (`data_dir/cifar-10-batches-py`).

    Downloads it with torchvision when the folder is missing and `download` is set. The batches are
    read here rather than through `torchvision.datasets.CIFAR10` so that the whole set becomes two
    uint8 tensors at once, with no PIL images in between.
    """
    folder = data_dir / CIFAR10_FOLDER
    if not folder.is_dir() and download:
        _download_cifar10(data_dir)
    if not folder.is_dir():
        raise DatasetMissing(
            f"CIFAR-10 not found in {folder}; download it on a machine with network access "
            f"(python -c \"import torchvision; torchvision.datasets.CIFAR10('{data_dir}', "
            'download=True)") and copy the folder here'
        )
    train = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    test_images, test_labels = _read_cifar_batch(folder / CIFAR10_TEST_FILE)
    return ImageData(
        name="cifar10",
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=10,
    )


def _download_cifar10(data_dir: Path) -> None:
    import torchvision  # imported here: only a first CIFAR-10 run needs it

    try:
        torchvision.datasets.CIFAR10(str(data_dir), train=True, download=True)
    except Exception as error:  # network errors come in many types; all mean the same here
        raise DatasetMissing(
            f"CIFAR-10 is not in {(data_dir / CIFAR10_FOLDER).resolve()} and could not be "
            f"downloaded ({type(error).__name__}); copy the {CIFAR10_FOLDER} folder into "
            f"{data_dir.resolve()}"
        ) from error


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(-1, 3, CIFAR10_SIDE, CIFAR10_SIDE)
    except FileNotFoundError as error:
        raise DatasetError(f"CIFAR-10 file missing: {path}; the folder is incomplete") from error
    except Exception as error:  # unpickling garbage raises many types; all mean "corrupt"
        raise DatasetError(
            f"CIFAR-10 file {path} is corrupt ({type(error).__name__}); delete the folder "
            "and download it again"
        ) from error
    if len(labels) != len(images) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"CIFAR-10 file {path} is corrupt (labels do not match the images)")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8×8, 17 grey levels), split per class."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # 0..16 grey levels → 0..255, so every dataset is uint8 with the same value range.
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        chosen = rng.choice(members, size=round(len(members) * test_fraction), replace=False)
        test_mask[chosen] = True
    tensor = torch.from_numpy(images[:, None, :, :].copy())
    target = torch.from_numpy(labels)
    return ImageData(
        name="digits",
        train_images=tensor[~torch.from_numpy(test_mask)],
        train_labels=target[~torch.from_numpy(test_mask)],
        test_images=tensor[torch.from_numpy(test_mask)],
        test_labels=target[torch.from_numpy(test_mask)],
        num_classes=10,
    )


def make_synthetic(
    n_train: int = 512,
    n_test: int = 256,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    seed: int = 0,
) -> ImageData:
    """Deterministic, learnable images: one smooth random pattern per class plus noise.

    The class patterns are low-frequency so that crops and flips keep them recognisable, and the
    noise keeps the task from being trivial. Any size, for tests and benchmarks.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=generator)
    patterns = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bilinear", align_corners=False
    )

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        noise = torch.randn(count, channels, image_size, image_size, generator=generator)
        images = patterns[labels] * 200 + 28 + noise * 40
        return images.clamp(0, 255).round().to(torch.uint8), labels

    train_images, train_labels = draw(n_train)
    test_images, test_labels = draw(n_test)
    return ImageData(
        name="synthetic",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=num_classes,
    )


def split_validation(data: ImageData, count: int, seed: int = VALIDATION_SEED) -> ImageData:
    """Move `count` training images, drawn with a fixed seed and in proportion to each class's
    share of the training set, into a validation split."""
    labels = data.train_labels.numpy()
    if not 1 <= count < len(labels):
        raise DatasetError(
            f"--validation {count} must leave training images: the training set has {len(labels)}"
        )
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    quotas = np.floor(exact).astype(np.int64)
    # Largest remainders first, so the quotas add up to `count` exactly.
    for index in np.argsort(-(exact - quotas), kind="stable")[: count - int(quotas.sum())]:
        quotas[index] += 1
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label, quota in zip(classes, quotas, strict=True):
        members = np.flatnonzero(labels == label)
        held[rng.choice(members, size=int(quota), replace=False)] = True
    mask = torch.from_numpy(held)
    return ImageData(
        name=data.name,
        train_images=data.train_images[~mask],
        train_labels=data.train_labels[~mask],
        test_images=data.test_images,
        test_labels=data.test_labels,
        num_classes=data.num_classes,
        val_images=data.train_images[mask],
        val_labels=data.train_labels[mask],
    )
