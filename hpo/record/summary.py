"""Human-readable lines about trials (accuracies as percentages here only)."""

from __future__ import annotations

from collections.abc import Mapping

from optuna.trial import FrozenTrial

from hpo.record.trial_record import TrialRecord

# Every tunable parameter, in the export's order, by the short name a trial's line gives it.
SHORT_NAMES = (
    ("learning_rate", "lr"),
    ("batch_size", "bs"),
    ("p_dropout", "p"),
    ("momentum", "mom"),
    ("lr_gamma", "gamma"),
    ("weight_decay", "wd"),
    ("nesterov", "nesterov"),
)


def format_value(value: object) -> str:
    """A parameter's value as a line shows it: numbers to 4 digits, flags as on or off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_params(params: Mapping[str, object]) -> str:
    return " ".join(
        f"{short}={format_value(params[key])}" for key, short in SHORT_NAMES if key in params
    )


def describe_trial(trial: FrozenTrial, best: FrozenTrial | None) -> str:
    record = TrialRecord.from_trial(trial)
    line = f"trial {trial.number:>3} {trial.state.name:<8} {format_params(trial.params)}"
    if record.best_epoch is not None:
        line += (
            (f" | val loss {_loss(record, 'val_loss')}" if record.validated else "")
            + f" | test loss {_loss(record, 'test_loss')}"
            + f" acc {100 * (record.test_accuracy or 0.0):.1f}% at epoch {record.best_epoch}"
        )
    line += (
        f" | {record.epochs_run or 0} epochs, {record.stop_reason or '?'}, {record.seconds:.1f} s"
    )
    if best is not None:
        line += f" | best: trial {best.number} ({best.value:.4f})"
    return line


def _loss(record: TrialRecord, curve: str) -> str:
    # A PRUNED trial's value is its last report, not its best; show the best epoch's loss.
    at_best = record.at_best_epoch(curve)
    if at_best is not None:
        return f"{at_best:.4f}"
    return f"{record.value:.4f}" if record.value is not None else "?"
