"""The best-epoch weights of a study's best trials, kept as Optuna artifacts.

Each trial that completes uploads a model file (model.model_file) of its best epoch through
`optuna.artifacts.upload_artifact`, into `<checkpoint folder>/models`, so that optuna-dashboard
lists it among the trial's artifacts. After each trial, the study keeps the files of its
`keep_models` best COMPLETE trials and removes the rest (Determined's `save_trial_best`, Ray's
`num_to_keep`).

Several workers prune at once without a lock: a worker removes a trial's file only when it sees
`keep_models` COMPLETE trials better than that one, and a finished trial's value never changes,
so no worker can remove a file of the true top K. Two workers finishing together may each keep
their own trial for a moment; the next trial's pruning removes the extra file.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

import hpo
from hpo.errors import UsageError, cannot_write, check_folder_exists
from hpo.record.trial_record import TrialRecord
from hpo.trial.folders import models_folder
from hpo.workqueue.trial_writes import set_trial_attrs
from model.atomic_file import write_atomically
from model.metrics import EpochMetrics
from model.model_file import ModelFileError, model_payload, read_model_file, write_model_file
from model.pipeline import DevicePipeline
from model.train import TrainConfig, network_args


def library_versions() -> dict[str, str]:
    """For a model file: hpo's and Optuna's (model.model_file adds torch's and Python's)."""
    return {"hpo": hpo.__version__, "optuna": optuna.__version__}


@dataclass(frozen=True)
class ModelStore:
    """The folder of kept model files, and Optuna's artifact store over it."""

    folder: Path

    @property
    def artifacts(self) -> FileSystemArtifactStore:
        return FileSystemArtifactStore(str(self.folder))


def model_store(checkpoint_dir: str | None) -> ModelStore:
    """The kept models of the checkpoint folder `checkpoint_dir` (None: the default one)."""
    return ModelStore(models_folder(checkpoint_dir))


def model_file_payload(
    *,
    train_config: TrainConfig,
    pipeline: DevicePipeline,
    num_classes: int,
    class_names: tuple[str, ...],
    preset: str,
    weights: dict[str, Any],
    metrics: EpochMetrics,
    **described: Any,
) -> dict[str, Any]:
    """A model file's contents (model.model_file) for weights that `train_config` trained on
    `pipeline`'s data, `metrics` the epoch they are from; `described`: where they came from (a
    study's trial, or `hpo train`'s settings)."""
    return model_payload(
        network=network_args(train_config, pipeline, num_classes),
        state_dict=weights,
        preset=preset,
        mean=pipeline.stats.mean,
        std=pipeline.stats.std,
        crop=pipeline.crop,
        class_names=class_names,
        params=asdict(train_config.hyperparams),
        metrics=metrics.as_dict(),
        versions=library_versions(),
        **described,
    )


def keep_model(trial: optuna.Trial, store: ModelStore, payload: dict[str, Any]) -> str:
    """Upload the model file as an artifact of the (running) trial; its id is also recorded
    with the trial (`TrialRecord.model_artifact`)."""
    store.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.folder, prefix=".upload-") as folder:
        path = Path(folder) / f"trial-{trial.number}-epoch-{payload['best_epoch']}.pt"
        write_model_file(path, payload)
        with warnings.catch_warnings():  # experimental in Optuna 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=store.artifacts,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="application/octet-stream",
            )
    set_trial_attrs(trial, TrialRecord(model_artifact=artifact_id).to_attrs())
    return artifact_id


# How many trials below the kept ones a finished trial's worker looks at: those that trials
# finishing at the same moment on other workers pushed out of the top together.
PUSHED_OUT_WINDOW = 32


def prune_models(
    finished: FrozenTrial, ranking: list[FrozenTrial], keep: int, store: ModelStore
) -> int:
    """After `finished` ends: remove its model file unless it is among the `keep` best COMPLETE
    trials, and the files of the trials that the newcomer (or others finishing meanwhile)
    pushed out of them. `ranking`: the study's best COMPLETE trials, best first, at least
    `keep + PUSHED_OUT_WINDOW` of them where the study has as many. Each finished trial's worker
    does this once, so every file but the best `keep` goes, while each call reads only the top
    of the ranking, not every trial. Returns how many files were removed. Running trials' files
    are left alone: they may be the best yet."""
    kept = {trial.number for trial in ranking[:keep]}
    candidates = [finished, *ranking[keep:]]
    removed = 0
    artifacts = store.artifacts
    for trial in candidates:
        artifact_id = TrialRecord.from_trial(trial).model_artifact
        if trial.number in kept or artifact_id is None:
            continue
        try:
            artifacts.remove(artifact_id)
            removed += 1
        except (ArtifactNotFound, FileNotFoundError):
            pass  # removed already, by this worker or another
    return removed


def export_model(store: ModelStore, trial: FrozenTrial, out: Path) -> dict[str, Any]:
    """Copy the trial's kept model file to `out`, checked to load first; returns its contents."""
    artifact_id = TrialRecord.from_trial(trial).model_artifact
    reader = None
    if artifact_id is not None:
        with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
            reader = store.artifacts.open_reader(artifact_id)
    if reader is None:
        kept = "was not kept" if artifact_id is not None else "has no kept weights"
        raise UsageError(
            f"trial {trial.number}'s model {kept} in {store.folder} (a study keeps the weights "
            "of its best --keep-models trials; pass the workers' --checkpoint-dir, or retrain "
            "it with hpo train --params)"
        )
    check_folder_exists(out)
    saved: dict[str, Any] = {}

    def copy_checked(partial: Path) -> None:
        with reader, partial.open("wb") as copy:
            shutil.copyfileobj(reader, copy)
        saved.update(read_model_file(partial))  # refused before it takes `out`'s place

    try:
        write_atomically(out, copy_checked)
    except ModelFileError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(cannot_write(out, error)) from None
    return saved
