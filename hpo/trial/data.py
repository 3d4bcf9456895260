"""Loading a dataset onto the training device, once per worker (or per retraining)."""

from __future__ import annotations

from dataclasses import replace

import torch

from hpo.errors import UsageError
from model.data_spec import TRAIN_SIZES, DataSpec
from model.datasets import (
    DatasetError,
    DatasetMissing,
    ImageData,
    augment_spec,
    load_dataset,
    make_synthetic,
    split_validation,
)
from model.pipeline import DevicePipeline
from model.presets import PRESETS

SYNTHETIC_TRAIN = TRAIN_SIZES["synthetic"]  # CIFAR-sized images when no subset is given


def load_data(spec: DataSpec, elsewhere: str = "or pass --data-dir") -> ImageData:
    """The images `spec` names: the subset first, then the validation split out of it. A
    dataset that is missing is one line, ending with `elsewhere`: how to point at another
    folder."""
    try:
        if spec.dataset == "synthetic":
            n_train = spec.subset or SYNTHETIC_TRAIN
            data = make_synthetic(n_train=n_train, n_test=_test_size(n_train), seed=spec.seed)
        else:
            data = load_dataset(spec.dataset, spec.data_dir)
            data = _subset(data, spec.subset) if spec.subset else data
        return split_validation(data, spec.validation) if spec.validation else data
    except DatasetMissing as error:
        raise UsageError(f"{error}, {elsewhere}") from None
    except DatasetError as error:
        raise UsageError(str(error)) from None


def _test_size(n_train: int) -> int:
    return max(n_train // 4, 10)


def _subset(data: ImageData, n_train: int) -> ImageData:
    n_test = _test_size(n_train)
    return replace(
        data,
        train_images=data.train_images[:n_train],
        train_labels=data.train_labels[:n_train],
        test_images=data.test_images[:n_test],
        test_labels=data.test_labels[:n_test],
    )


def device_pipeline(
    data: ImageData, dataset: str, preset: str, device: torch.device
) -> DevicePipeline:
    """The data on `device`, normalized and augmented as the preset says."""
    stage = PRESETS[preset]
    augment = augment_spec(dataset) if stage.augment else None
    return DevicePipeline(data, device, normalize=stage.normalize, augment=augment)
