"""The device pipeline against torchvision's transforms, pixel for pixel."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

import model.pipeline
from model.datasets import AugmentSpec, make_synthetic
from model.pipeline import DevicePipeline, center_crop, channel_stats
from tests.model.pipeline_checks import check_crop_and_flip_distribution, raw

CPU = torch.device("cpu")




def test_center_crop_matches_torchvision() -> None:
    images = make_synthetic(n_train=10, n_test=10).test_images
    assert torch.equal(center_crop(images, 28), T.CenterCrop(28)(images))


def test_normalization_matches_to_tensor_and_normalize() -> None:
    data = make_synthetic(n_train=64, n_test=16)
    pipeline = DevicePipeline(data, CPU, normalize=True, augment=None)
    stats = channel_stats(data.train_images)
    reference = T.Compose([T.ToTensor(), T.Normalize(stats.mean, stats.std)])
    for i in range(4):
        pil = Image.fromarray(data.test_images[i].permute(1, 2, 0).numpy())
        assert torch.allclose(pipeline.test_images[i], reference(pil), atol=1e-5)


def test_stats_come_from_the_training_set_only() -> None:
    data = make_synthetic(n_train=64, n_test=16)
    brighter = replace(data, test_images=torch.full_like(data.test_images, 255))
    assert DevicePipeline(brighter, CPU, True, None).stats == channel_stats(data.train_images)




def test_random_crop_and_flip_distribution() -> None:
    check_crop_and_flip_distribution(CPU)




def test_flip_is_torchvision_hflip() -> None:
    data = make_synthetic(n_train=200, n_test=10)
    pipeline = DevicePipeline(
        data, CPU, normalize=False, augment=AugmentSpec(crop=32, padding=0, flip=True)
    )
    generator = torch.Generator().manual_seed(1)
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    ((batch, _),) = list(pipeline.train_batches(200, generator))
    batch = raw(batch)
    sources = data.train_images[order].float()
    for i in range(200):
        assert torch.equal(batch[i], sources[i]) or torch.equal(batch[i], TF.hflip(sources[i]))


def test_padding_behaves_as_random_crop_padding() -> None:
    data = make_synthetic(n_train=50, n_test=10, image_size=8, channels=1)
    pipeline = DevicePipeline(
        data, CPU, normalize=False, augment=AugmentSpec(crop=8, padding=1, flip=False)
    )
    ((batch, _),) = list(pipeline.train_batches(50, torch.Generator().manual_seed(0)))
    assert batch.shape == (50, 1, 8, 8)
    assert pipeline.test_images.shape == (10, 1, 8, 8)  # center crop of 8 from 8: unchanged
    assert torch.equal(raw(pipeline.test_images), data.test_images.float())


@pytest.mark.parametrize("batch_size", [7, 16, 50])
def test_an_epoch_visits_every_image_once(batch_size: int) -> None:
    data = make_synthetic(n_train=50, n_test=10)
    pipeline = DevicePipeline(data, CPU, normalize=False, augment=None)
    seen = torch.cat(
        [raw(images) for images, _ in pipeline.train_batches(batch_size, torch.Generator())]
    )
    assert seen.shape[0] == 50
    key = lambda t: sorted(t.reshape(t.shape[0], -1).sum(1).tolist())  # noqa: E731
    assert np.allclose(key(seen), key(data.train_images.float()))


def _augmenting_pipeline(count: int = 300) -> DevicePipeline:
    data = make_synthetic(n_train=count, n_test=10)
    augment = AugmentSpec(crop=28, padding=0, flip=True)
    return DevicePipeline(data, CPU, normalize=True, augment=augment)


def test_gather_chunks_do_not_change_the_epoch(monkeypatch) -> None:
    pipeline = _augmenting_pipeline()
    epochs = []
    for chunk in (7, 10**6):
        monkeypatch.setattr(model.pipeline, "GATHER_CHUNK_DEFAULT", chunk)
        batches = pipeline.train_batches(64, torch.Generator().manual_seed(3))
        epochs.append([(images.clone(), labels.clone()) for images, labels in batches])
    assert len(epochs[0]) == len(epochs[1]) == 5
    for (a, la), (b, lb) in zip(*epochs, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_a_batch_is_a_slice_and_a_normalization() -> None:
    """The indexing and random draws happen once per epoch, not per batch (on a GPU each op of a
    batch is a kernel launch, which costs more than the work of this CNN's small kernels)."""
    batches = _augmenting_pipeline().train_batches(32, torch.Generator().manual_seed(0))
    log = _OpLog()
    with log:
        next(batches)  # the epoch's shuffle, draws and gathers happen here
        start = len(log.ops)
        for _ in range(5):
            next(batches)
    later = log.ops[start:]
    assert len(later) == 5 * 5, later
    assert set(later) == {"slice", "_to_copy", "sub", "mul"}
