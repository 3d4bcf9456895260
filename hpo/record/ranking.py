"""How trials rank: the one order behind the best trial, the top-K tables, the kept models and
the configurations that `hpo confirm` retrains."""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState


def rank_key(trial: FrozenTrial) -> tuple[float, int]:
    """A COMPLETE trial's place: lowest value first, on ties the earliest."""
    assert trial.value is not None
    return (trial.value, trial.number)


def ranked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials, lowest value first; on ties the earliest, whatever the database's
    order. PRUNED trials never rank: their value is their last report, not their best."""
    complete = (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None)
    return sorted(complete, key=rank_key)


def best_of(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The first of `ranked(trials)`, if any."""
    order = ranked(trials)
    return order[0] if order else None
