"""A trained model as one self-describing file: weights, and all it takes to use them.

Written for a study's kept trials (their best-epoch weights), by `hpo export --model` and by
`hpo train --out`. The file holds tensors, numbers, strings and containers only, so that
`torch.load(path, weights_only=True)` reads it and a file from elsewhere can run no code:

    network        SeedCNN's arguments by name: SeedCNN(**saved["network"])
    state_dict     its weights
    preset         which of the seed's stages trained it
    normalization  per-channel mean and std of the training images, pixel values in [0, 1]
    crop           the center crop of its input (None: the whole image)
    class_names    the label of each output, in order
    params         learning_rate, batch_size, p_dropout, momentum, lr_gamma, weight_decay (None:
                   the preset's)
    best_epoch     the epoch these weights are from
    metrics        that epoch's metrics (test loss and accuracy, ...)
    versions       hpo, torch, optuna, python
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from model.atomic_file import save_torch_atomically
from model.network import SeedCNN
from model.pipeline import ChannelStats, center_crop, normalization

MODEL_FORMAT = "hpo-model/1"


class ModelFileError(Exception):
    """A file that is not a model file this project wrote, or cannot be read as one."""


def model_payload(
    *,
    network: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    preset: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    crop: int | None,
    class_names: tuple[str, ...],
    params: dict[str, Any],
    metrics: dict[str, Any],
    versions: dict[str, str],
    **described: Any,
) -> dict[str, Any]:
    """The file's contents; `described`: more keys about where it came from (study, trial...);
    `versions`: of the libraries above model/, which adds torch's and Python's."""
    return {
        "format": MODEL_FORMAT,
        "network": dict(network),
        "state_dict": state_dict,
        "preset": preset,
        "normalization": {"mean": list(mean), "std": list(std)},
        "crop": crop,
        "class_names": list(class_names),
        "params": dict(params),
        "best_epoch": metrics["epoch"],
        "metrics": dict(metrics),
        **described,
        # A plain string: a TorchVersion is no weight.
        "versions": {
            **versions,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
    }


def write_model_file(path: Path, payload: dict[str, Any]) -> None:
    """Written whole or not at all (a temporary file, then a rename)."""
    save_torch_atomically(path, payload)


def read_model_file(path: Path) -> dict[str, Any]:
    """The file's contents, read with `weights_only=True`; anything else is refused."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} not found") from None
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelFileError(
            f"model file {path} refused ({type(error).__name__}: {reason})"
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ModelFileError(f"model file {path} is not one that hpo wrote")
    return payload


def load_network(path: Path | str) -> tuple[SeedCNN, dict[str, Any]]:
    """The saved `SeedCNN`, in eval mode on the CPU, and the file's description of it."""
    saved = read_model_file(Path(path))
    if saved.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"model file {path} has no network description (an older file?)")
    network = SeedCNN(**saved["network"])
    network.load_state_dict(saved["state_dict"])
    return network.eval(), saved


def prepare_images(saved: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N×C×H×W, as the dataset stores them) as the network takes them: center
    cropped and normalized as training's test set was, so that the predictions are the ones the
    study measured."""
    if saved["crop"] is not None:
        images = center_crop(images, saved["crop"])
    stats = ChannelStats(
        mean=tuple(saved["normalization"]["mean"]), std=tuple(saved["normalization"]["std"])
    )
    shift, scale = normalization(stats, images.device)
    return (images.to(torch.float32) - shift) * scale
