"""Where the workers of a study keep files: one folder that all of them reach (a shared volume
for many machines). Apart from the checkpoint code, so that commands that only read the folder
(export, dashboard) start without importing torch."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_ENV = "HPO_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = "checkpoints"
MODELS_FOLDER = "models"  # the kept best-epoch weights (hpo.trial.kept_models), under the root


def checkpoint_root(given: str | None) -> Path:
    """The checkpoint folder: as given, else $HPO_CHECKPOINT_DIR, else ./checkpoints."""
    return Path(given or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT_DIR)


def models_folder(given: str | None) -> Path:
    return checkpoint_root(given) / MODELS_FOLDER
