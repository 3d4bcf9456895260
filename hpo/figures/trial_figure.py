"""Each trial's learning-curve figure as an optuna-dashboard artifact, drawn when it is viewed.

The worker registers one artifact per trial (hpo.record.curves_artifact: its metadata in the
trial's system attrs, the way `optuna.artifacts.upload_artifact` does) but stores no file:
`CurvesArtifactStore`, the artifact store that `hpo dashboard` gives optuna-dashboard, draws the
SVG from the trial's stored curves each time the figure is opened. The figure therefore shows
every epoch stored so far, costs the training loop one write per trial rather than one upload
per epoch, and needs no file storage shared between the machines: the study database is enough.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, BinaryIO

from bottle import HTTPError
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpo.figures.curve_figure import learning_curves_svg
from hpo.record.curves_artifact import trial_id_of
from hpo.record.trial_record import Curves, TrialRecord

if TYPE_CHECKING:
    from hpo.workqueue.optuna_private import ArtifactStore


def trial_curves(trial: FrozenTrial) -> Curves:
    """The trial's stored curves; the test loss alone (its intermediate values) before any."""
    curves = TrialRecord.from_trial(trial).curves
    if curves.get("test_loss"):
        return curves
    steps = sorted(trial.intermediate_values)
    return {"test_loss": [trial.intermediate_values[step] for step in steps]}


def curves_svg(trial: FrozenTrial) -> str:
    curves = trial_curves(trial)
    test_loss = curves.get("test_loss", [])
    finite = [(v, epoch) for epoch, v in enumerate(test_loss, start=1) if v is not None]
    best_epoch = min(finite)[1] if finite else None
    params = ", ".join(f"{name} {_short(value)}" for name, value in trial.params.items())
    title = f"Trial {trial.number} ({trial.state.name.lower()}): {params}"
    return learning_curves_svg(curves, title, best_epoch)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class CurvesArtifactStore:
    """An optuna ArtifactStore: curves artifacts drawn from `storage`, others read from `files`
    (uploads through the dashboard) or else `models` (the kept best-epoch weights).

    Without `files`, uploads from the dashboard are refused.
    """

    def __init__(
        self,
        storage: BaseStorage,
        files: ArtifactStore | None = None,
        models: ArtifactStore | None = None,
    ) -> None:
        self.storage = storage
        self.files = files
        self.models = models

    def open_reader(self, artifact_id: str) -> BinaryIO:
        trial_id = trial_id_of(artifact_id)
        if trial_id is None:
            for store in (self.files, self.models):
                if store is None:
                    continue
                try:
                    return store.open_reader(artifact_id)
                except (ArtifactNotFound, FileNotFoundError):
                    pass
            raise ArtifactNotFound(f"artifact {artifact_id} is not stored here")
        try:
            trial = self.storage.get_trial(trial_id)
        except KeyError:
            raise ArtifactNotFound(f"no trial with id {trial_id}") from None
        return io.BytesIO(curves_svg(trial).encode())

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if self.files is None:
            # An HTTP error, so that optuna-dashboard shows the reason rather than a 500.
            raise HTTPError(
                403, "this dashboard stores no uploads; start hpo dashboard with --artifact-dir"
            )
        self.files.write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        # optuna-dashboard removes a study's artifacts when it deletes the study (with
        # --allow-writes): a kept model goes with its study, and an artifact stored nowhere
        # (a curves figure, a file removed already) is nothing to remove, not an error.
        if trial_id_of(artifact_id) is not None:
            return
        for store in (self.files, self.models):
            if store is None:
                continue
            with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
                store.remove(artifact_id)
