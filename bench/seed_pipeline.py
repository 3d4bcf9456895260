"""The seed's own input pipeline, kept as the baseline the benchmarks measure against.

As in the course: a torchvision-style dataset that turns each uint8 image into a PIL image, the
`RandomCrop(28)` + `RandomHorizontalFlip` + `ToTensor` + `Normalize` transforms, and a shuffling
`DataLoader` with worker processes, batches copied to the device in the training loop.
"""

from __future__ import annotations

import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from model.datasets import ImageData
from model.pipeline import channel_stats


class PILImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: T.Compose) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as CIFAR10 keeps it
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def seed_loaders(
    data: ImageData, batch_size: int, workers: int, pin_memory: bool
) -> tuple[DataLoader, DataLoader]:
    stats = channel_stats(data.train_images)
    normalize = T.Normalize(stats.mean, stats.std)
    train = PILImages(
        data.train_images,
        data.train_labels,
        T.Compose([T.RandomCrop(28), T.RandomHorizontalFlip(), T.ToTensor(), normalize]),
    )
    test = PILImages(
        data.test_images, data.test_labels, T.Compose([T.CenterCrop(28), T.ToTensor(), normalize])
    )
    common = dict(num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, **common),
        DataLoader(test, batch_size=batch_size, shuffle=False, **common),
    )
