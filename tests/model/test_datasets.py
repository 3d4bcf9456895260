import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from model import datasets
from model.datasets import (
    DatasetError,
    load_cifar10,
    load_digits,
    make_synthetic,
    split_validation,
)


def write_cifar_folder(root: Path, per_batch: int = 6) -> dict[str, np.ndarray]:
    """A small CIFAR-10 in its real on-disk format: pickled dicts of 3072-byte rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in [*datasets.CIFAR10_TRAIN_FILES, datasets.CIFAR10_TEST_FILE]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=per_batch)]
        with (folder / name).open("wb") as handle:
            pickle.dump(
                {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": data,
                    b"filenames": [b"x.png"] * per_batch,
                },
                handle,
            )
        written[name] = data
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [b"airplane"] * 10}, handle)
    return written


def test_cifar10_reads_the_real_format(tmp_path: Path) -> None:
    written = write_cifar_folder(tmp_path)
    data = load_cifar10(tmp_path, download=False)
    assert data.train_images.shape == (30, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (6, 3, 32, 32)
    # Row layout is 1024 red, then green, then blue bytes, each row-major.
    first = written["data_batch_1"][0]
    assert torch.equal(data.train_images[0, 1, 0], torch.from_numpy(first[1024:1056]))
    assert data.train_labels.dtype == torch.int64


def test_cifar10_missing_folder_says_how_to_provide_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found.*download=True"):
        load_cifar10(tmp_path, download=False)


def test_cifar10_download_failure_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    def offline(*_args, **_kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetError, match="could not be downloaded"):
        load_cifar10(tmp_path, download=True)


def test_cifar10_corrupt_file(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3 is corrupt"):
        load_cifar10(tmp_path, download=False)


def test_cifar10_incomplete_folder(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_cifar10(tmp_path, download=False)


def test_digits_is_a_stratified_uint8_split() -> None:
    data = load_digits()
    assert data.train_images.shape[1:] == (1, 8, 8)
    assert len(data.train_labels) + len(data.test_labels) == 1797
    assert data.train_images.dtype == torch.uint8 and int(data.train_images.max()) == 255
    assert set(data.test_labels.tolist()) == set(range(10))
    assert torch.equal(load_digits().test_images, data.test_images)


def test_synthetic_is_deterministic_and_sized() -> None:
    a, b = (
        make_synthetic(n_train=40, n_test=20, seed=3),
        make_synthetic(n_train=40, n_test=20, seed=3),
    )
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert a.train_images.shape == (40, 3, 32, 32)
    assert not torch.equal(
        a.train_images, make_synthetic(n_train=40, n_test=20, seed=4).train_images
    )


def test_the_validation_split_is_fixed_balanced_and_disjoint() -> None:
    data = load_digits()
    split = split_validation(data, 300)
    assert len(split.val_labels) == 300
    assert len(split.train_labels) == len(data.train_labels) - 300
    # Per class in proportion to its share of the training set (to within one image).
    shares = torch.bincount(data.train_labels, minlength=10) * 300 / len(data.train_labels)
    held = torch.bincount(split.val_labels, minlength=10)
    assert ((held - shares).abs() < 1).all(), (held, shares)
    # Disjoint: every training image is either kept or held out, never both.
    kept = {tuple(image.flatten().tolist()) for image in split.train_images}
    assert not any(tuple(image.flatten().tolist()) in kept for image in split.val_images[:50])
    assert torch.equal(split_validation(data, 300).val_images, split.val_images)  # a fixed draw
    assert torch.equal(split.test_images, data.test_images)
    with pytest.raises(DatasetError, match="must leave training images"):
        split_validation(data, len(data.train_labels))
