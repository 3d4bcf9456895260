"""Human-readable lines about trials (accuracies as percentages here only)."""

from __future__ import annotations

from optuna.trial import FrozenTrial


def format_params(params: dict[str, object]) -> str:
    parts = []
    for key, short in (("learning_rate", "lr"), ("batch_size", "bs"), ("p_dropout", "p")):
        if key in params:
            value = params[key]
            parts.append(f"{short}={value:.4g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def describe_trial(trial: FrozenTrial, best: FrozenTrial | None) -> str:
    attrs = trial.user_attrs
    seconds = sum(v or 0.0 for v in attrs.get("curves", {}).get("seconds", []))
    line = f"trial {trial.number:>3} {trial.state.name:<8} {format_params(trial.params)}"
    if "best_epoch" in attrs:
        validated = "val_accuracy" in attrs  # chosen on a validation split
        line += (
            (f" | val loss {_loss(trial, attrs, 'val_loss')}" if validated else "")
            + f" | test loss {_loss(trial, attrs, 'test_loss')}"
            + f" acc {100 * attrs['test_accuracy']:.1f}% at epoch {attrs['best_epoch']}"
        )
    line += (
        f" | {attrs.get('epochs_run', 0)} epochs, {attrs.get('stop_reason', '?')}, {seconds:.1f} s"
    )
    if best is not None:
        line += f" | best: trial {best.number} ({best.value:.4f})"
    return line


def _loss(trial: FrozenTrial, attrs: dict[str, object], curve: str) -> str:
    # A PRUNED trial's value is its last report, not its best; show the best epoch's loss.
    curves = attrs.get("curves", {})
    epoch = attrs["best_epoch"]
    losses = curves.get(curve, []) if isinstance(curves, dict) else []
    if isinstance(epoch, int) and 0 < epoch <= len(losses) and losses[epoch - 1] is not None:
        return f"{losses[epoch - 1]:.4f}"
    return f"{trial.value:.4f}" if trial.value is not None else "?"
