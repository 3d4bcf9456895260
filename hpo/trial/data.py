"""Loading a study's dataset onto the training device, once per worker."""

from __future__ import annotations

import torch

from hpo.errors import UsageError
from hpo.study.config import StudyConfig
from model.datasets import DatasetError, ImageData, augment_spec, load_dataset, make_synthetic
from model.pipeline import DevicePipeline
from model.presets import PRESETS

SYNTHETIC_TRAIN = 2000  # CIFAR-sized synthetic images when no --subset is given


def study_data(config: StudyConfig) -> ImageData:
    try:
        if config.dataset == "synthetic":
            n_train = config.subset or SYNTHETIC_TRAIN
            return make_synthetic(n_train=n_train, n_test=max(n_train // 4, 10), seed=config.seed)
        data = load_dataset(config.dataset, config.data_dir)
    except DatasetError as error:
        raise UsageError(str(error)) from None
    return _subset(data, config.subset) if config.subset else data


def _subset(data: ImageData, n_train: int) -> ImageData:
    n_test = max(n_train // 4, 10)
    return ImageData(
        data.name,
        data.train_images[:n_train],
        data.train_labels[:n_train],
        data.test_images[:n_test],
        data.test_labels[:n_test],
        data.num_classes,
    )


def study_pipeline(config: StudyConfig, data: ImageData, device: torch.device) -> DevicePipeline:
    preset = PRESETS[config.preset]
    augment = augment_spec(config.dataset) if preset.augment else None
    return DevicePipeline(data, device, normalize=preset.normalize, augment=augment)
