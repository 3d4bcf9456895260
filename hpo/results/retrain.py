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
from hpo.study.search_space import BATCH_SIZES, DROPOUTS, LEARNING_RATES
from hpo.trial.data import study_data, study_pipeline
from model.dataset_names import DATASETS
from model.presets import PRESETS
from model.speed import SpeedOptions
from model.train import EpochMetrics, TrainConfig, Training


@dataclass(frozen=True)
class RetrainParams:
    learning_rate: float
    batch_size: int
    p_dropout: float | None
    epoch: int
    dataset: str
    preset: str
    test_loss: float | None = None  # as exported, for comparison
    test_accuracy: float | None = None


def read_params(path: Path) -> RetrainParams:
    """The export file, checked field by field; any problem is one clear error."""
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

    def field(name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in raw:
            raise UsageError(f"params file {path} has no {name!r}")
        value = raw[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"params file {path}: {name} must be a number, got {value!r}")
        return value

    learning_rate = float(field("learning_rate", (int, float)))
    batch_size = field("batch_size", int)
    epoch = field("epoch", int)
    p_dropout = raw.get("p_dropout")
    dataset, preset = raw.get("dataset"), raw.get("preset")
    lo, hi = min(LEARNING_RATES), max(LEARNING_RATES)
    checks = [
        (lo <= learning_rate <= hi, f"learning_rate {learning_rate} is outside [{lo}, {hi}]"),
        (1 <= batch_size <= 4 * max(BATCH_SIZES), f"batch_size {batch_size} is out of range"),
        (epoch >= 1, f"epoch must be 1 or more, got {epoch}"),
        (dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}"),
        (preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}, got {preset!r}"),
    ]
    if p_dropout is not None:
        ok = isinstance(p_dropout, int | float) and not isinstance(p_dropout, bool)
        checks.append(
            (
                ok and min(DROPOUTS) <= p_dropout <= max(DROPOUTS),
                f"p_dropout {p_dropout!r} is outside [{min(DROPOUTS)}, {max(DROPOUTS)}]",
            )
        )
    elif preset in PRESETS and PRESETS[preset].dropout:
        checks.append((False, f"preset {preset} has dropout, so p_dropout is needed"))
    for ok, message in checks:
        if not ok:
            raise UsageError(f"params file {path}: {message}")
    return RetrainParams(
        learning_rate,
        batch_size,
        p_dropout,
        epoch,
        dataset,
        preset,
        raw.get("test_loss"),
        raw.get("test_accuracy"),
    )


def retrain(
    params: RetrainParams,
    device: torch.device,
    data_dir: str,
    seed: int,
    speed: SpeedOptions,
    out: Path | None,
    say: Callable[[str], None] = print,
) -> EpochMetrics:
    config = StudyConfig(
        dataset=params.dataset,
        data_dir=data_dir,
        epochs=params.epoch,
        preset=params.preset,
        seed=seed,
    )
    data = study_data(config)
    pipeline = study_pipeline(config, data, device)
    train_config = TrainConfig(
        params.learning_rate,
        params.batch_size,
        params.p_dropout,
        params.epoch,
        PRESETS[params.preset],
        seed,
        speed,
    )
    run = Training(train_config, pipeline, data.num_classes)
    say(
        f"training {params.preset} on {params.dataset} ({pipeline.train_size} images) for "
        f"{params.epoch} epochs on {device}: learning_rate={params.learning_rate:.4g}, "
        f"batch_size={params.batch_size}, p_dropout={params.p_dropout}"
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
        "config": {**params.__dict__, "seed": seed, "device": str(device)},
        "metrics": run.history[-1].as_dict(),
        "history": [m.as_dict() for m in run.history],
        "state_dict": run.state().network,
        "versions": {
            "hpo": hpo.__version__,
            "torch": torch.__version__,
            "optuna": optuna.__version__,
            "python": platform.python_version(),
        },
    }
    partial = out.with_name(out.name + ".partial")
    torch.save(payload, partial)
    partial.replace(out)
