"""`hpo train`: retrain the final model with exported parameters for the exported epochs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hpo.errors import UsageError, cannot_write, check_folder_exists
from hpo.record.config import StudyConfig
from hpo.record.limits import check, check_hyperparams
from hpo.record.summary import format_value
from hpo.record.yaml_numbers import YAMLError, load_yaml
from hpo.trial.data import device_pipeline, load_data
from hpo.trial.kept_models import model_file_payload
from hpo.trial.progress import EpochProgress
from model.data_spec import DataSpec
from model.hyperparams import EXTRA_PARAMS, FLAG_PARAMS, Hyperparams
from model.model_file import ModelFileError, read_model_file, write_model_file
from model.presets import PRESETS
from model.speed import SpeedOptions
from model.train import EpochMetrics, TrainConfig, Training


@dataclass(frozen=True, kw_only=True)
class RetrainParams:
    """What `hpo train` takes from an export: the configuration, how long to train it, and what
    reproduces the trial (an older export, or a hand-written file, may lack the latter)."""

    hyperparams: Hyperparams
    epoch: int  # train this many epochs: the trial's best epoch
    dataset: str
    preset: str
    test_loss: float | None = None  # as exported, for comparison
    test_accuracy: float | None = None
    trial: int | None = None
    seed: int | None = None
    subset: int | None = None
    validation: int | None = None  # images the study held out of training
    device: str | None = None  # where the trial ran
    speed: tuple[str, ...] | None = None  # its fast paths (model.speed names)
    test_loss_curve: tuple[float, ...] | None = None  # per epoch, up to `epoch`


# How close each epoch's test loss must come to the trial's for a retrain to "match" it: the same
# arithmetic in the same order gives the same bits; a little room for a different BLAS build.
MATCH_RTOL = 1e-5


def read_params(path: Path) -> RetrainParams:
    """The export file, checked by the rules that a study applies; any problem is one clear
    error naming the file."""
    raw = _read_object(path)
    try:
        hyperparams = Hyperparams(
            learning_rate=float(_number(raw, "learning_rate", (int, float))),
            batch_size=_number(raw, "batch_size", int),
            p_dropout=_number(raw, "p_dropout", (int, float), required=False),
            # The optimizer's settings, where the study's search space tuned them.
            **{
                name: _number(raw, name, (int, float), required=False)
                for name in EXTRA_PARAMS
                if name not in FLAG_PARAMS
            },
            nesterov=_flag(raw, "nesterov"),
        )
        epoch = _number(raw, "epoch", int)
        check("epochs", epoch, "epoch")
        # The study's own checks of the dataset, preset, seed and subset, and the search
        # space's of the ranges.
        seed = _number(raw, "seed", int, required=False)
        config = StudyConfig(
            dataset=_text(raw, "dataset"),
            preset=_text(raw, "preset"),
            seed=seed or 0,
            subset=_number(raw, "subset", int, required=False),
            validation=_number(raw, "validation", int, required=False),
        )
        check_hyperparams(hyperparams, config.preset)
        speed = raw.get("speed")
        if speed is not None and not (
            isinstance(speed, list) and all(isinstance(name, str) for name in speed)
        ):
            raise UsageError(f"speed must be a list of fast-path names, got {speed!r}")
        device = raw.get("device")
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError):
                raise UsageError(f"device must be one like cpu or cuda:0, got {device!r}") from None
        curve = raw.get("test_loss_curve")
        if curve is not None and not (
            isinstance(curve, list) and all(isinstance(v, (int, float)) for v in curve)
        ):
            raise UsageError("test_loss_curve must be a list of numbers")
    except UsageError as error:
        raise UsageError(f"params file {path}: {error}") from None
    return RetrainParams(
        hyperparams=hyperparams,
        epoch=epoch,
        dataset=config.dataset,
        preset=config.preset,
        test_loss=raw.get("test_loss"),
        test_accuracy=raw.get("test_accuracy"),
        trial=raw.get("trial") if isinstance(raw.get("trial"), int) else None,
        seed=seed,
        subset=config.subset,
        validation=config.validation,
        device=device,
        speed=tuple(speed) if speed is not None else None,
        test_loss_curve=tuple(float(v) for v in curve) if curve is not None else None,
    )


def _read_object(path: Path) -> dict[str, Any]:
    """The export as JSON or YAML (both of hpo export's formats; YAML reads JSON too)."""
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"params file {path} not found (write one with hpo export -o)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read params file {path}: {error}") from None
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"params file {path} is neither JSON nor YAML{where}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"params file {path} must hold an object of keys (hpo export's format)")
    return raw


def _number(
    raw: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    if raw.get(name) is None:
        if required:
            raise UsageError(f"has no {name!r}")
        return None
    value = raw[name]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # `5e2`, as people write numbers: a whole number
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = "a whole number" if kind is int else "a number"
        raise UsageError(f"{name} must be {expected}, got {value!r}")
    return value


def _flag(raw: dict[str, Any], name: str) -> bool | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        raise UsageError(f"has no {name!r}")
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a name, got {value!r}")
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
    data = load_data(
        DataSpec(
            dataset=params.dataset,
            data_dir=data_dir,
            seed=seed,
            subset=params.subset,
            validation=params.validation,
        )
    )
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
        + "".join(
            f", {name}={format_value(getattr(hyperparams, name))}"
            for name in EXTRA_PARAMS
            if getattr(hyperparams, name) is not None
        )
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
    verdict = compare_with_trial(params, [m.test_loss for m in run.history], seed, device, speed)
    if verdict is not None:
        say(verdict)
    if out is not None:
        save_model(out, run, params, seed, device, data.class_names)
        say(f"saved {out}")
    return final


def compare_with_trial(
    params: RetrainParams,
    test_losses: list[float],
    seed: int,
    device: torch.device,
    speed: SpeedOptions,
) -> str | None:
    """ "matches trial N" when every epoch's test loss equals the trial's to float noise; else
    where it first differs, and what differed from the trial's run."""
    if params.test_loss_curve is None:
        return None
    name = f"trial {params.trial}" if params.trial is not None else "the exported trial"
    epochs = len(params.test_loss_curve)
    for epoch, (ours, theirs) in enumerate(
        zip(test_losses, params.test_loss_curve, strict=False), start=1
    ):
        if abs(ours - theirs) > MATCH_RTOL * max(1.0, abs(theirs)):
            return (
                f"differs from {name} from epoch {epoch}: test loss {ours:.6g} against "
                f"{theirs:.6g}" + _differences(params, seed, device, speed)
            )
    return (
        f"matches {name}: the test loss of each of its {epochs} epochs, to within "
        f"{MATCH_RTOL:g} relative"
    )


def _differences(
    params: RetrainParams, seed: int, device: torch.device, speed: SpeedOptions
) -> str:
    known = []
    if params.seed is not None and params.seed != seed:
        known.append(f"seed {seed}, the trial's {params.seed}")
    if params.device is not None and params.device != str(device):
        known.append(f"device {device}, the trial's {params.device}")
    if params.speed is not None and list(params.speed) != speed.names():
        known.append(f"speed {speed.names() or 'none'}, the trial's {list(params.speed) or 'none'}")
    return f" ({'; '.join(known)})" if known else ""


def speed_for(params: RetrainParams, given: str | None, device: torch.device) -> str:
    """`--speed` if given; else the trial's own fast paths when they apply to this device (the
    same device type); else `auto`."""
    if given is not None:
        return given
    same_kind = params.device is not None and torch.device(params.device).type == device.type
    if params.speed is not None and same_kind:
        return ",".join(params.speed) or "none"
    return "auto"


def save_model(
    out: Path,
    run: Training,
    params: RetrainParams,
    seed: int,
    device: torch.device,
    class_names: tuple[str, ...],
) -> None:
    """The network after the last epoch, as a self-describing model file (model.model_file)."""
    check_folder_exists(out)
    payload = model_file_payload(
        train_config=run.config,
        pipeline=run.pipeline,
        num_classes=len(class_names),
        class_names=class_names,
        preset=params.preset,
        weights=run.state().network,
        metrics=run.history[-1],
        config={
            **asdict(params.hyperparams),
            "epoch": params.epoch,
            "dataset": params.dataset,
            "preset": params.preset,
            "test_loss": params.test_loss,
            "test_accuracy": params.test_accuracy,
            "seed": seed,
            "device": str(device),
        },
        history=[m.as_dict() for m in run.history],
    )
    try:
        write_model_file(out, payload)
    except OSError as error:
        raise UsageError(cannot_write(out, error)) from None


def load_model(path: Path) -> dict[str, Any]:
    """A model file (model.model_file), read with `weights_only=True`: tensors, numbers,
    strings and containers only, so that a file from elsewhere can run no code. Any file that
    does not load that way is refused with one clear error."""
    try:
        return read_model_file(path)
    except ModelFileError as error:
        raise UsageError(str(error)) from None
