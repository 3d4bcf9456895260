"""A trial's stored results, typed: the one writer and the one reader of its user attributes.

Optuna keeps what a trial produced as user attributes, a JSON value per name, which
optuna-dashboard, Optuna's CLI and existing studies read under these names (DESIGN.md's contract:
`best_epoch`, `epochs_run`, `stop_reason`, `test_accuracy`, the per-epoch `curves`). A producer
builds a `TrialRecord` and writes `to_attrs()`; a reader takes `TrialRecord.from_trial(trial)` and
never names an attribute. The field names are the stored names.

Adding a per-epoch metric: give `model.metrics.EpochMetrics` the field and its training loop the
value, then list it here in `CURVE_KEYS` (stored per epoch) and, to store and show its value at
the best epoch, add a field of that name and list it in `SHOWN_AT_BEST` (the export and the
trials table show those).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from optuna.trial import FrozenTrial

from model.metrics import EpochHistory, EpochMetrics

Curves = dict[str, list[float | None]]

# `EpochMetrics` fields stored per epoch, under their own names, in the `curves` attribute.
CURVE_KEYS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "test_top5",
    "learning_rate",
    "seconds",
)
VALIDATION_CURVE_KEYS = ("val_loss", "val_accuracy")  # a study with a validation split's too
# `EpochMetrics` fields stored at the best epoch, under their own names.
AT_BEST = ("test_accuracy", "test_top5", "train_loss", "train_accuracy")
# Of those, what the export and the trials table show (beside the contract's test loss).
SHOWN_AT_BEST = ("test_accuracy",)
TRACEBACK_LINES = 12
HANDED_BACK = "handed_back"  # the stop reason of a trial its worker handed back when stopped


@dataclass(frozen=True, kw_only=True)
class TrialError:
    """A trial's exception, stored so the failure can be read from the database."""

    type: str
    message: str
    traceback: tuple[str, ...] = ()

    @classmethod
    def of(cls, error: BaseException) -> TrialError:
        lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
        return cls(
            type=type(error).__name__,
            message=str(error)[:1000],
            traceback=tuple(lines[-TRACEBACK_LINES:]),
        )

    @classmethod
    def from_attr(cls, stored: object) -> TrialError | None:
        if not isinstance(stored, Mapping):
            return None
        return cls(
            type=str(stored.get("type")),
            message=str(stored.get("message")),
            traceback=tuple(stored.get("traceback") or ()),
        )

    def to_attr(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": list(self.traceback)}

    def line(self) -> str:
        return f"{self.type}: {self.message}"


def _not_stored() -> Any:
    return field(default=None, metadata={"stored": False})


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """What a trial stored. Every field is optional: a trial writes its record in parts (when it
    starts, when it ends, when its weights are kept, when it fails), and `to_attrs` writes only
    the fields that are set."""

    # Written when the trial starts (hpo.trial.objective).
    device: str | None = None
    speed: tuple[str, ...] | None = None  # the fast paths it trained with; () for none
    resumed_from_epoch: int | None = None  # it went on from a checkpoint after this epoch
    # Written when it ends (hpo.trial.epoch_book): the metrics are those of its best epoch.
    epochs_run: int | None = None
    stop_reason: str | None = None  # patience, max_epochs, diverged, pruned, oom
    best_epoch: int | None = None  # 1-based
    test_accuracy: float | None = None
    test_top5: float | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    # With a validation split only: the trial's value is then its validation loss.
    test_loss: float | None = None
    val_accuracy: float | None = None
    curves: Curves = field(default_factory=dict)  # per epoch, under CURVE_KEYS' names
    # Written after it completed: the artifact id of its kept best-epoch weights.
    model_artifact: str | None = None
    # Written when it raised.
    error: TrialError | None = None
    # Queued with it by `hpo confirm`: the trial it retrains, and its training seed.
    confirms_trial: int | None = None
    seed: int | None = None
    # The trial's value as Optuna holds it (read, never written as an attribute).
    value: float | None = _not_stored()

    @classmethod
    def of_run(cls, history: EpochHistory, stop_reason: str | None) -> TrialRecord:
        """The record of a run that ended: its best epoch and curves, from its history."""
        best = history.best
        at_best: dict[str, Any] = {}
        if best is not None:
            at_best = {name: getattr(best, name) for name in AT_BEST}
            at_best["best_epoch"] = best.epoch
            if best.val_loss is not None:  # the value is then the validation loss
                at_best.update(test_loss=best.test_loss, val_accuracy=best.val_accuracy)
        return cls(
            epochs_run=history.epochs_run,
            stop_reason=stop_reason,
            curves=curves_of(history),
            **at_best,
        )

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        stored = trial.user_attrs
        values: dict[str, Any] = {name: stored[name] for name in _STORED if name in stored}
        if "error" in values:
            values["error"] = TrialError.from_attr(values["error"])
        if isinstance(values.get("speed"), list):
            values["speed"] = tuple(values["speed"])
        if not isinstance(values.get("curves", {}), dict):
            values["curves"] = {}
        return cls(value=trial.value, **values)

    def to_attrs(self) -> dict[str, Any]:
        """The fields that are set, by their stored names, as JSON values."""
        attrs: dict[str, Any] = {}
        for name in _STORED:
            value = getattr(self, name)
            if value is None or (name == "curves" and not value):
                continue
            if isinstance(value, TrialError):
                value = value.to_attr()
            elif isinstance(value, tuple):
                value = list(value)
            attrs[name] = value
        return attrs

    @property
    def validated(self) -> bool:
        """Whether its best epoch was chosen on a validation split (its value is then the
        validation loss, and its test loss an attribute)."""
        return self.val_accuracy is not None

    @property
    def test_loss_at_best(self) -> float | None:
        return self.test_loss if self.validated else self.value

    def curve(self, key: str) -> list[float | None]:
        return list(self.curves.get(key) or [])

    def at_best_epoch(self, key: str) -> float | None:
        """The curve `key`'s value at the best epoch; None where it is not stored."""
        values = self.curve(key)
        epoch = self.best_epoch
        if isinstance(epoch, int) and 0 < epoch <= len(values):
            return values[epoch - 1]
        return None

    @property
    def seconds(self) -> float:
        """The training time of its epochs."""
        return sum(v or 0.0 for v in self.curve("seconds"))

    def shown_at_best(self) -> dict[str, float | None]:
        """The best epoch's metrics that the export and the trials table show."""
        return {name: getattr(self, name) for name in SHOWN_AT_BEST}

    def table_columns(self) -> dict[str, object]:
        """The trials table's columns from the record, after Optuna's own."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stop_reason": self.stop_reason,
            **self.shown_at_best(),
            "device": self.device,
        }


# The fields stored as attributes, by name (every worker reads every trial's record after each
# trial, so not recomputed per call).
_STORED = tuple(f.name for f in fields(TrialRecord) if f.metadata.get("stored", True))


def curves_of(history: Iterable[EpochMetrics]) -> Curves:
    """The per-epoch curves of `history`, as stored (NaN and inf, not JSON, stored as null)."""
    epochs = list(history)
    keys: tuple[str, ...] = CURVE_KEYS
    if any(m.val_loss is not None for m in epochs):
        keys += VALIDATION_CURVE_KEYS
    return {key: [_json_float(getattr(m, key)) for m in epochs] for key in keys}


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def handed_back_record(signal_name: str) -> TrialRecord:
    """What a trial stores when its worker is stopped (SIGTERM, Ctrl-C) and hands it back, so
    that `hpo status` tells it apart from a crash."""
    return TrialRecord(
        stop_reason=HANDED_BACK,
        error=TrialError(
            type="HandedBack", message=f"{signal_name}: its worker was stopped and handed it back"
        ),
    )
