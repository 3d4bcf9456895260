"""The name of a trial's learning-curve figure among its optuna-dashboard artifacts.

The worker lists the figure when its trial starts (hpo.trial.objective); the dashboard's artifact
store draws it from the trial's stored curves when it is opened (hpo.figures.trial_figure). No
file is uploaded: the artifact id stands for the trial.
"""

from __future__ import annotations

# optuna-dashboard's artifact URLs take hex digits and hyphens only; "cc-" starts no uuid4.
CURVES_ID_PREFIX = "cc-"
CURVES_FILENAME = "learning-curves.svg"


def curves_artifact_id(trial_id: int) -> str:
    return f"{CURVES_ID_PREFIX}{trial_id:x}"


def trial_id_of(artifact_id: str) -> int | None:
    """The trial id a curves artifact id stands for; None for any other artifact id."""
    if not artifact_id.startswith(CURVES_ID_PREFIX):
        return None
    try:
        return int(artifact_id[len(CURVES_ID_PREFIX) :], 16)
    except ValueError:
        return None


def curves_artifact_meta(trial_id: int) -> dict[str, str | None]:
    """The listing of the trial's learning-curve figure among its artifacts in optuna-dashboard
    (the figure is drawn when asked for: no file is uploaded)."""
    return {
        "artifact_id": curves_artifact_id(trial_id),
        "filename": CURVES_FILENAME,
        "mimetype": "image/svg+xml",
        "encoding": None,
    }
