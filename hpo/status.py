"""`hpo status`: a study's trials by state, the best so far, and what is running now."""

from __future__ import annotations

from collections import Counter

import optuna
from optuna.trial import TrialState

from hpo.study import best_trial, load_config
from hpo.text import format_params


def status_text(storage: optuna.storages.BaseStorage, study_name: str) -> str:
    config = load_config(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    reasons = Counter(t.user_attrs.get("stop_reason") for t in trials if t.state.is_finished())
    budget = f"budget {config.n_trials} trials" if config.sampler == "tpe" else "grid"
    lines = [
        f"study {study_name!r}: {config.sampler} on {config.dataset}, preset {config.preset}, "
        f"up to {config.epochs} epochs, patience {config.patience}, pruner {config.pruner}, "
        f"{budget}",
        f"trials: {len(trials)} — "
        + ", ".join(f"{states.get(s, 0)} {s.name.lower()}" for s in TrialState),
    ]
    if reasons:
        lines.append(
            "stop reasons: "
            + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: str(kv[0])))
        )
    best = best_trial(study)
    if best is not None:
        lines.append(
            f"best: trial {best.number}, test loss {best.value:.4f} at epoch "
            f"{best.user_attrs.get('best_epoch')} (accuracy "
            f"{100 * best.user_attrs.get('test_accuracy', 0.0):.1f}%), {format_params(best.params)}"
        )
    else:
        lines.append("best: none yet")
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            epoch = max(trial.intermediate_values, default=0)
            lines.append(
                f"running: trial {trial.number}, epoch {epoch} of {config.epochs}, "
                f"{format_params(trial.params)}"
            )
    return "\n".join(lines)
