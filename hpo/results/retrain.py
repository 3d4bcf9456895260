"""`hpo train`: retrain the final model with exported parameters for the exported epochs."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

import hpo
from hpo.errors import UsageError
from hpo.results.progress import EpochProgress
from hpo.study.config import StudyConfig
from hpo.study.search_space import check_in_range
from hpo.trial.data import device_pipeline, load_data
from model.data_spec import DataSpec
from model.hyperparams import Hyperparams
from model.presets import PRESETS
from model.speed import SpeedOptions
from model.train import EpochMetrics, TrainConfig, Training


@dataclass(frozen=True, kw_only=True)
class RetrainParams:
    """What `hpo train` takes from an export: the configuration and how long to train it."""

    hyperparams: Hyperparams
    epoch: int  # train this many epochs: the trial's best epoch
    dataset: str
    preset: str
    test_loss: float | None = None  # as exported, for comparison
    test_accuracy: float | None = None


def read_params(path: Path) -> RetrainParams:
    """The export file, checked by the rules that a study applies; any problem is one clear
    error naming the file."""
    raw = _read_object(path)
    try:
        hyperparams = Hyperparams(
            learning_rate=float(_number(raw, "learning_rate", (int, float))),
            batch_size=_number(raw, "batch_size", int),
            p_dropout=_number(raw, "p_dropout", (int, float), required=False),
        )
        epoch = _number(raw, "epoch", int)
        if epoch < 1:
            raise UsageError(f"epoch must be 1 or more, got {epoch}")
        # The study's own checks of the dataset and preset, and the search space's of the ranges.
        config = StudyConfig(dataset=raw.get("dataset"), preset=raw.get("preset"))
        check_in_range(hyperparams, config.preset)
    except UsageError as error:
        raise UsageError(f"params file {path}: {error}") from None
    return RetrainParams(
        hyperparams=hyperparams,
        epoch=epoch,
        dataset=config.dataset,
        preset=config.preset,
        test_loss=raw.get("test_loss"),
        test_accuracy=raw.get("test_accuracy"),
    )


def _read_object(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"params file {path} not found (write one with hpo export -o)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read params file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(
            f"params file {path} is not JSON: {error.msg} at line {error.lineno}"
        ) from None
    if not isinstance(raw, dict):
        raise UsageError(f"params file {path} must hold a JSON object (hpo export's format)")
    return raw


def _number(
    raw: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    if raw.get(name) is None:
        if required:
            raise UsageError(f"has no {name!r}")
        return None
    value = raw[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UsageError(f"{name} must be a number, got {value!r}")
    return value


def retrain(
    params: RetrainParams,
    device: torch.device,
    data_dir: str,
    seed: int,
    speed: SpeedOptions,
    out: Path | None,
    say: Callable[[str], None] = print,
) -> EpochMetrics:
    data = load_data(DataSpec(dataset=params.dataset, data_dir=data_dir, seed=seed))
    pipeline = device_pipeline(data, params.dataset, params.preset, device)
    train_config = TrainConfig(
        hyperparams=params.hyperparams,
        max_epochs=params.epoch,
        preset=PRESETS[params.preset],
        seed=seed,
        speed=speed,
    )
    run = Training(train_config, pipeline, data.num_classes)
    hyperparams = params.hyperparams
    say(
        f"training {params.preset} on {params.dataset} ({pipeline.train_size} images) for "
        f"{params.epoch} epochs on {device}: learning_rate={hyperparams.learning_rate:.4g}, "
        f"batch_size={hyperparams.batch_size}, p_dropout={hyperparams.p_dropout}"
    )
    progress = EpochProgress(params.epoch)
    for metrics in run.epochs():
        progress.update(metrics)
    final = run.history[-1]
    say(
        f"test loss {final.test_loss:.4f}, accuracy {100 * final.test_accuracy:.2f}% "
        f"(top-5 {100 * final.test_top5:.2f}%) after epoch {final.epoch}"
        + (
            f"; the export said {params.test_loss:.4f} and {100 * params.test_accuracy:.2f}%"
            if params.test_loss is not None and params.test_accuracy is not None
            else ""
        )
    )
    if out is not None:
        save_model(out, run, params, seed, device)
        say(f"saved {out}")
    return final


def save_model(
    out: Path, run: Training, params: RetrainParams, seed: int, device: torch.device
) -> None:
    if not out.parent.resolve().is_dir():
        raise UsageError(f"cannot write {out}: folder {out.parent} does not exist")
    payload = {
        "config": {
            **params.hyperparams.as_params(),
            "p_dropout": params.hyperparams.p_dropout,
            "epoch": params.epoch,
            "dataset": params.dataset,
            "preset": params.preset,
            "test_loss": params.test_loss,
            "test_accuracy": params.test_accuracy,
            "seed": seed,
            "device": str(device),
        },
        "metrics": run.history[-1].as_dict(),
        "history": [m.as_dict() for m in run.history],
        "state_dict": run.state().network,
        "versions": {
            "hpo": hpo.__version__,
            "torch": str(torch.__version__),  # a plain string: a TorchVersion is no weight
            "optuna": optuna.__version__,
            "python": platform.python_version(),
        },
    }
    partial = out.with_name(out.name + ".partial")
    torch.save(payload, partial)
    partial.replace(out)


def load_model(path: Path) -> dict[str, Any]:
    """A model file written by `save_model`, read with `weights_only=True`: tensors, numbers,
    strings and containers only, so that a file from elsewhere can run no code. Any file that
    does not load that way is refused with one clear error."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"model file {path} not found") from None
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"model file {path} refused ({type(error).__name__}: {reason})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise UsageError(f"model file {path} is not one that hpo train wrote")
    return payload
