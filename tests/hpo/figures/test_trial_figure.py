"""Each trial's learning-curve figure: drawn from the stored curves, live while the trial runs."""

from __future__ import annotations

import io
import itertools
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest
import torch
from bottle import HTTPError
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from hpo.figures.curve_figure import learning_curves_svg
from hpo.figures.ticks import integer_axis, integer_ticks, nice_ticks
from hpo.figures.trial_figure import CurvesArtifactStore
from hpo.record.config import StudyConfig
from hpo.record.curves_artifact import CURVES_FILENAME, curves_artifact_id, trial_id_of
from hpo.trial.data import device_pipeline, load_data
from hpo.trial.epoch_book import build_pruner
from hpo.trial.objective import Objective
from hpo.workqueue.optuna_private import study_id, trial_id
from storage import open_storage, parse_storage_url

SVG = "{http://www.w3.org/2000/svg}"


def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    root = ET.fromstring(svg)
    return [
        [tuple(float(c) for c in point.split(",")) for point in line.get("points").split()]
        for line in root.iter(f"{SVG}polyline")
    ]


def test_the_figure_draws_train_and_test_loss_and_accuracy_per_epoch() -> None:
    curves = {
        "train_loss": [2.0, 1.5, 1.0, 0.8],
        "test_loss": [2.1, 1.4, 1.2, 1.3],
        "train_accuracy": [0.2, 0.4, 0.6, 0.7],
        "test_accuracy": [0.2, 0.45, 0.5, 0.49],
    }
    svg = learning_curves_svg(curves, "Trial 3 <lr 0.1>", best_epoch=3)
    lines = _polylines(svg)  # also checks that it is well-formed XML
    assert len(lines) == 4 and all(len(line) == 4 for line in lines)
    # Each panel's x axis runs over the same epochs; a higher value is drawn higher up.
    train_loss = lines[0]
    assert [p[1] for p in train_loss] == sorted(p[1] for p in train_loss)  # falling loss
    train_accuracy = lines[2]
    assert [p[1] for p in train_accuracy] == sorted((p[1] for p in train_accuracy), reverse=True)
    best = [line for line in ET.fromstring(svg).iter(f"{SVG}line") if line.get("stroke-dasharray")]
    epoch_3_x = lines[1][2][0]
    assert any(float(line.get("x1")) == epoch_3_x for line in best)
    assert "Trial 3 &lt;lr 0.1&gt;" in svg


def test_a_missing_epoch_breaks_the_line_and_no_epoch_says_so() -> None:
    svg = learning_curves_svg({"test_loss": [2.0, 1.0, None, 0.5, 0.4]}, "t")
    assert [len(line) for line in _polylines(svg)] == [2, 2]
    assert "no epoch yet" in learning_curves_svg({}, "t")


@pytest.mark.parametrize("low,high", [(0.013, 2.37), (0.0, 1.0), (5.0, 5.0), (-3.0, 1200.0)])
def test_ticks_are_round_and_cover_the_range(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) <= 8
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1


@pytest.mark.parametrize("low,high", [(1, 2), (1, 3), (0, 11), (1, 150), (0, 9999), (5, 5)])
def test_whole_number_axes_tick_on_whole_numbers_only(low: int, high: int) -> None:
    ticks = integer_ticks(low, high)
    assert ticks and all(low <= tick <= high for tick in ticks) and len(ticks) <= 7
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert len(steps) <= 1 and all(step >= 1 for step in steps)
    assert integer_axis(low, high)["dtick"] == (steps.pop() if steps else 1)


def test_the_svg_ticks_epochs_on_whole_numbers() -> None:
    svg = learning_curves_svg({"test_loss": [2.0, 1.0], "test_accuracy": [0.5, 0.7]}, "two")
    epoch_ticks = [
        text.text
        for text in ET.fromstring(svg).iter(f"{SVG}text")
        if text.get("class") == "tick" and text.get("data-axis", "").startswith("x")
    ]
    assert epoch_ticks == ["1", "2", "1", "2"]  # both panels


def test_curves_artifact_ids_name_their_trial_and_never_a_uuid() -> None:
    assert trial_id_of(curves_artifact_id(123456)) == 123456
    assert trial_id_of(str(uuid.uuid4())) is None
    assert trial_id_of("cc-zz") is None


def _study_with_trial(tmp_path: Path) -> tuple[optuna.storages.BaseStorage, optuna.Study]:
    storage = open_storage(parse_storage_url(f"sqlite:///{tmp_path / 'f.db'}"), create=True)
    return storage, optuna.create_study(storage=storage, study_name="f")


def test_the_store_draws_a_trials_figure_and_refuses_other_artifacts(tmp_path: Path) -> None:
    storage, study = _study_with_trial(tmp_path)
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
    for epoch, loss in enumerate([2.0, 1.0, 1.5], start=1):
        trial.report(loss, epoch)
    store = CurvesArtifactStore(storage)
    # Before any curves are stored, the test loss comes from the intermediate values.
    svg = store.open_reader(curves_artifact_id(trial_id(trial))).read().decode()
    assert "Trial 0 (running)" in svg and [len(line) for line in _polylines(svg)] == [3]
    trial.set_user_attr("curves", {"train_loss": [1.0, 0.5], "test_loss": [2.0, 1.0]})
    svg = store.open_reader(curves_artifact_id(trial_id(trial))).read().decode()
    assert [len(line) for line in _polylines(svg)] == [2, 2]
    with pytest.raises(ArtifactNotFound):
        store.open_reader(curves_artifact_id(trial_id(trial) + 100))
    with pytest.raises(ArtifactNotFound):
        store.open_reader(str(uuid.uuid4()))
    with pytest.raises(HTTPError, match="--artifact-dir"):
        store.write(str(uuid.uuid4()), io.BytesIO(b"x"))
    store.remove(curves_artifact_id(trial_id(trial)))  # nothing stored: nothing happens


def test_other_artifacts_go_to_the_artifact_folder(tmp_path: Path) -> None:
    storage, _ = _study_with_trial(tmp_path)
    (tmp_path / "files").mkdir()
    store = CurvesArtifactStore(storage, FileSystemArtifactStore(str(tmp_path / "files")))
    artifact_id = str(uuid.uuid4())
    store.write(artifact_id, io.BytesIO(b"uploaded"))
    assert store.open_reader(artifact_id).read() == b"uploaded"
    store.remove(artifact_id)
    with pytest.raises(ArtifactNotFound):
        store.open_reader(artifact_id)


def test_a_running_trials_curves_are_stored_as_epochs_finish(tmp_path: Path) -> None:
    """The dashboard's figure of a running trial shows the epochs finished so far."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    config = StudyConfig(sampler="grid", dataset="synthetic", subset=96, epochs=6, patience=6)
    data = load_data(config.data_spec)
    pipeline = device_pipeline(data, config.dataset, config.preset, torch.device("cpu"))
    study = optuna.create_study(
        storage=open_storage(parse_storage_url(url), create=True),
        study_name="live",
        pruner=build_pruner(config.pruner, config.patience, config.epochs),
    )
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    watcher = open_storage(parse_storage_url(url))  # another process's view, e.g. the dashboard's
    seen: dict[int, int] = {}

    def stored_epochs() -> int:
        trial = watcher.get_all_trials(study_id(study))[0]
        return len(trial.user_attrs.get("curves", {}).get("train_loss", []))

    def watch(_: int, metrics) -> None:
        # Called before epoch `metrics.epoch` is booked: the ones before it may be stored.
        if metrics.epoch in (3, 5):
            deadline = time.monotonic() + 10
            while stored_epochs() < metrics.epoch - 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen[metrics.epoch] = stored_epochs()
            trial = watcher.get_all_trials(study_id(study))[0]
            assert trial.state == TrialState.RUNNING

    objective = Objective(config, pipeline, data.num_classes, progress=watch, live_curves_s=0.0)
    study.optimize(objective, n_trials=1)
    assert seen == {3: 2, 5: 4}
    trial = study.trials[0]
    assert len(trial.user_attrs["curves"]["train_loss"]) == trial.user_attrs["epochs_run"] == 6
    # Listed among the trial's artifacts, as Optuna's public API reads them.
    listed = optuna.artifacts.get_all_artifact_meta(trial, storage=watcher)
    assert [(m.artifact_id, m.filename) for m in listed] == [
        (curves_artifact_id(trial_id(trial)), CURVES_FILENAME)
    ]
    svg = CurvesArtifactStore(watcher).open_reader(curves_artifact_id(trial_id(trial))).read()
    assert [len(line) for line in _polylines(svg.decode())] == [6, 6, 6, 6]


def test_kept_models_are_read_and_go_with_their_study(tmp_path: Path) -> None:
    storage, _ = _study_with_trial(tmp_path)
    (tmp_path / "models").mkdir()
    models = FileSystemArtifactStore(str(tmp_path / "models"))
    artifact_id = str(uuid.uuid4())
    models.write(artifact_id, io.BytesIO(b"weights"))
    store = CurvesArtifactStore(storage, None, models)  # uploads refused, models readable
    assert store.open_reader(artifact_id).read() == b"weights"
    with pytest.raises(HTTPError, match="--artifact-dir"):
        store.write(str(uuid.uuid4()), io.BytesIO(b"x"))
    store.remove(artifact_id)  # what optuna-dashboard does when it deletes the study
    store.remove(artifact_id)  # removed already: nothing to do, no error
    with pytest.raises(ArtifactNotFound):
        store.open_reader(artifact_id)
