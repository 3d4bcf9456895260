"""`hpo status`: a study's trials by state, the best so far, what runs now, and what recovered."""

from __future__ import annotations

from collections import Counter

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.confirm.statistics import load_confirmation, verdict
from hpo.record.lineage import is_retry, lineage, retry_history
from hpo.record.summary import format_params
from hpo.record.trial_record import HANDED_BACK, TrialRecord
from hpo.study.queue import best_trial, load_config
from hpo.study.recovery import DEFAULT_GRACE_S, MAX_RETRIES, stale_trial_numbers


def status_text(storage: RDBStorage, study_name: str) -> str:
    """The study's trials by state, its best so far, and what its workers are doing; a trial
    is stale after the storage's grace period."""
    config = load_config(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    reasons = Counter(str(records[t.number].stop_reason) for t in trials if t.state in ended)
    budget = f"budget {config.n_trials} trials" if config.sampler != "grid" else "grid"
    if config.space is not None:
        budget += ", tuning " + ", ".join(config.space)
    lines = [
        f"study {study_name!r}: {config.sampler} on {config.dataset}, preset {config.preset}, "
        f"up to {config.epochs} epochs, patience {config.patience}, pruner {config.pruner}, "
        f"{budget}"
        + (f", chosen on {config.validation} held-out images" if config.validation else ""),
        f"trials: {len(trials)} — "
        + ", ".join(f"{states.get(s, 0)} {s.name.lower()}" for s in TrialState),
    ]
    if reasons:
        lines.append("stop reasons: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    retries = [t for t in trials if is_retry(t)]
    resumed = [t for t in trials if records[t.number].resumed_from_epoch is not None]
    stale = stale_trial_numbers(study, storage)
    if retries or resumed or stale:
        lines.append(
            f"recovery: {len(retries)} retried (queued again after a failure), "
            f"{len(resumed)} resumed from a checkpoint, {len(stale)} stale now "
            f"(running without a heartbeat for over {storage.grace_period or DEFAULT_GRACE_S} s"
            + (f": trials {', '.join(map(str, stale))})" if stale else ")")
        )
    lines += _failure_lines(trials, records)
    best = best_trial(study)
    if best is not None:
        record = records[best.number]
        lines.append(
            f"best: trial {best.number}, {config.selected_on} loss {best.value:.4f} at epoch "
            f"{record.best_epoch} (accuracy {100 * (record.test_accuracy or 0.0):.1f}%), "
            f"{format_params(best.params)}"
        )
    else:
        lines.append("best: none yet")
    confirmation = load_confirmation(storage, study_name)
    if confirmation is not None:
        lines.append(
            f"confirmation: study {confirmation.study!r}, {confirmation.finished} of "
            f"{confirmation.total} runs finished; {verdict(confirmation)}"
        )
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            epoch = max(trial.intermediate_values, default=0)
            resumed_from = records[trial.number].resumed_from_epoch
            resumed_note = f", resumed at epoch {resumed_from}" if resumed_from is not None else ""
            lines.append(
                f"running: trial {trial.number}, epoch {epoch} of {config.epochs}"
                f"{resumed_note}, {format_params(trial.params)}"
            )
    return "\n".join(lines)


MAX_FAILURE_LINES = 10


def _failure_lines(trials: list[FrozenTrial], records: dict[int, TrialRecord]) -> list[str]:
    """One line per failed trial, newest first: why, and whether it was queued again."""
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retried_as = {retry_history(t)[-1]: t.number for t in trials if is_retry(t)}
    attempts = Counter(lineage(t) for t in trials)
    lines = []
    for trial in reversed(failed[-MAX_FAILURE_LINES:]):
        record = records[trial.number]
        if record.stop_reason == HANDED_BACK and record.error is not None:
            why = f"handed back ({record.error.message})"
        elif record.error is not None:
            why = record.error.line()
        else:
            why = "no error recorded (its worker died: killed, or its node lost)"
        if trial.number in retried_as:
            then = f"retried as trial {retried_as[trial.number]}"
        else:
            tries = attempts[lineage(trial)]
            then = (
                f"gave up after {tries} attempts (at most {MAX_RETRIES} retries)"
                if tries > MAX_RETRIES
                else "not queued again"
            )
        lines.append(f"failed: trial {trial.number}, {why.splitlines()[0][:200]}; {then}")
    if len(failed) > MAX_FAILURE_LINES:
        lines.append(f"failed: {len(failed) - MAX_FAILURE_LINES} earlier failures not shown")
    return lines
