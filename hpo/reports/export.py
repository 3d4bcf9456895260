"""The best trial as the export contract: parameters, best epoch and its test metrics."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpo.confirm.statistics import (
    EPOCH_RANGE,
    LOSS_RANGE,
    Confirmation,
    Interval,
    load_confirmation,
    mean_interval,
    verdict,
)
from hpo.errors import UsageError, cannot_write, check_folder_exists
from hpo.record.config import StudyConfig
from hpo.record.seed_grid import trial_hyperparams
from hpo.record.trial_record import TrialRecord
from hpo.study.queue import best_trial, load_config
from model.atomic_file import write_atomically
from model.hyperparams import EXTRA_PARAMS

EXPORT_FORMATS = ("json", "yaml")


def best_export(storage: optuna.storages.BaseStorage, study_name: str) -> dict[str, Any]:
    """{study, trial, learning_rate, batch_size, p_dropout, epoch, test_loss, test_accuracy,
    dataset, preset} of the COMPLETE trial with the lowest test loss, then what reproduces it
    and how it was chosen."""
    config = load_config(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    export = study_export(study, config, load_confirmation(storage, study_name))
    if export is None:
        raise UsageError(f"study {study_name!r} has no completed trial yet")
    return export


def study_export(
    study: optuna.Study, config: StudyConfig, confirmation: Confirmation | None = None
) -> dict[str, Any] | None:
    """The export of the study's best trial, and how it was chosen; None before any trial
    completed. After a finished confirmation (hpo confirm), the confirmed leader instead, with
    its mean best epoch and metrics over the new seeds."""
    best = best_trial(study)
    if best is None:
        return None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    searched = f"lowest {config.selected_on} loss of {len(complete)} complete trials"
    if confirmation is None:
        return {**export_of(study.study_name, best, config), "chosen_by": searched}
    leader = confirmation.configs[0]
    if not confirmation.done or not leader.losses:
        return {
            **export_of(study.study_name, best, config),
            "chosen_by": f"{searched} (its confirmation in {confirmation.study!r} has "
            f"{confirmation.finished} of {confirmation.total} runs finished)",
        }
    return confirmed_export(study, config, confirmation)


def confirmed_export(
    study: optuna.Study, config: StudyConfig, confirmation: Confirmation
) -> dict[str, Any]:
    """The confirmed leader: its configuration, its mean best epoch (rounded) and its mean test
    metrics over the new seeds; the intervals and the verdict under `confirmation`."""
    leader = confirmation.configs[0]
    trial = study.get_trials(deepcopy=False)[leader.trial]
    loss = mean_interval(leader.losses, LOSS_RANGE)
    accuracy = mean_interval(leader.accuracies, (0.0, 1.0))  # fractions, as everywhere
    epoch = mean_interval(leader.epochs, EPOCH_RANGE)
    export = export_of(study.study_name, trial, config, epoch=max(1, round(epoch.mean)))
    export.update(
        test_loss=mean_interval(leader.test_losses).mean,
        test_accuracy=accuracy.mean,
    )
    if config.validation is not None:
        export["validation_loss"] = loss.mean
    export["confirmation"] = {
        "study": confirmation.study,
        "seeds": confirmation.seeds,
        "runs": len(leader.losses),
        "diverged": leader.diverged,
        f"{config.selected_on}_loss_ci95": _bounds(loss),
        "test_accuracy_ci95": _bounds(accuracy),
        "epoch_ci95": _bounds(epoch),
        "distinguishable_from_runner_up": confirmation.distinguishable,
    }
    export["chosen_by"] = (
        f"confirmed: lowest mean {config.selected_on} loss of the top {len(confirmation.configs)} "
        f"trials over {len(confirmation.seeds)} new seeds each ({verdict(confirmation)})"
    )
    return export


def _bounds(interval: Interval) -> list[float] | None:
    return None if math.isnan(interval.low) else [interval.low, interval.high]


def export_of(
    study_name: str, best: FrozenTrial, config: StudyConfig, epoch: int | None = None
) -> dict[str, Any]:
    """The trial's export; `epoch`: another epoch than its best (a confirmation's mean), which
    the test-loss curve is then cut at."""
    hyperparams = trial_hyperparams(best.params, config.preset, config.search_space)
    record = TrialRecord.from_trial(best)
    epoch = epoch or record.best_epoch
    # The optimizer's settings that the study's search space tuned, after the seed's three.
    tuned = {
        name: value
        for name, value in hyperparams.as_params().items()
        if name in EXTRA_PARAMS and name in best.params
    }
    return {
        "study": study_name,
        "trial": best.number,
        "learning_rate": hyperparams.learning_rate,
        "batch_size": hyperparams.batch_size,
        "p_dropout": hyperparams.p_dropout,
        **tuned,
        "epoch": epoch,
        # With a validation split the trial's value is its validation loss; its record holds
        # the test loss of the same epoch.
        "test_loss": record.test_loss_at_best,
        **record.shown_at_best(),
        "dataset": config.dataset,
        "preset": config.preset,
        # After the contract's keys, what `hpo train --params` needs to run the trial again: the
        # study's seed (weights, data order, augmentation), its training subset, the trial's
        # device and fast paths, and its test-loss curve up to the best epoch, to compare with.
        "seed": config.seed,
        "subset": config.subset,
        "epochs": config.epochs,
        "patience": config.patience,
        "device": record.device,
        "speed": list(record.speed) if record.speed is not None else None,
        "test_loss_curve": record.curve("test_loss")[:epoch] or None,
        "validation": config.validation,
        "selected_on": config.selected_on,
        **({"validation_loss": best.value} if record.validated else {}),
        "model_artifact": record.model_artifact,
    }


def write_winner_model(
    storage: optuna.storages.BaseStorage,
    export: dict[str, Any],
    out: Path,
    checkpoint_dir: str | None,
) -> None:
    """The exported trial's kept model file, copied to `out`; one line on stderr says so."""
    from hpo.trial.kept_models import export_model, model_store

    study = optuna.load_study(study_name=export["study"], storage=storage)
    trial = study.get_trials(deepcopy=False)[export["trial"]]
    saved = export_model(model_store(checkpoint_dir), trial, out)
    metrics = saved["metrics"]
    print(
        f"wrote {out}: trial {trial.number}, epoch {saved['best_epoch']}, test loss "
        f"{metrics['test_loss']:.4f}, test accuracy {100 * metrics['test_accuracy']:.2f}%",
        file=sys.stderr,
    )


def render_export(export: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(export, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(export, sort_keys=False)
    raise UsageError(f"invalid format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a failed write never leaves half a file."""
    check_folder_exists(path)
    try:
        write_atomically(path, lambda partial: _write(partial, text))
    except OSError as error:
        raise UsageError(cannot_write(path, error)) from None


def _write(path: Path, text: str) -> None:
    path.write_text(text)
